"""The CI examples pass values through the environment, never by templating them into shell."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GITHUB = ROOT / "examples" / "ci" / "github-actions.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab-ci.yml"


def run_blocks(text: str) -> list[str]:
    """The shell of every ``run:`` key (one-line or block scalar), found by indentation."""
    blocks: list[str] = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?run:\s*(.*)$", line)
        if not match:
            continue
        indent = len(match.group(1))
        body = [match.group(2)]
        for follow in lines[i + 1:]:
            if follow.strip() and len(follow) - len(follow.lstrip()) <= indent:
                break
            body.append(follow)
        blocks.append("\n".join(body))
    return blocks


def test_github_workflow_never_templates_into_shell() -> None:
    text = GITHUB.read_text()
    blocks = run_blocks(text)
    assert len(blocks) >= 4
    for block in blocks:
        assert "${{" not in block, block
    assert "preview-slots allocate" in text and "--github-output" in text
    assert "preview-slots release" in text and "github.event.action == 'closed'" in text
    assert "steps.slot.outputs.url" in text


def test_run_blocks_parser_sees_templating() -> None:
    bad = "steps:\n  - run: |\n      echo ${{ github.head_ref }}\n  - env:\n      A: ${{ x }}\n"
    assert any("${{" in b for b in run_blocks(bad))
    assert not any("${{" in b for b in run_blocks(bad.replace("echo ${{ github.head_ref }}",
                                                              'echo "$A"')))


def test_gitlab_job_allocates_uses_and_releases() -> None:
    text = GITLAB.read_text()
    assert "${{" not in text
    assert "merge_request_event" in text
    assert "preview-slots allocate" in text and "dotenv: preview.env" in text
    assert "on_stop: release" in text and "action: stop" in text
    assert 'preview-slots release --run-id "mr-${CI_MERGE_REQUEST_IID}"' in text
