from preview_slots.cli import main

raise SystemExit(main())
