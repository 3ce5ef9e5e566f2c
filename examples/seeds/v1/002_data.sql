-- Example seed v1, part 2: deterministic data (no random(), no now()): the same version always
-- gives the same rows. 100 customers, 40 products, 250 orders, 600 order items.
INSERT INTO customers (id, email, name, created_at)
SELECT n, format('customer%s@example.com', n), format('Customer %s', n),
       timestamptz '2026-01-01 00:00:00+00' + n * interval '7 hours'
FROM generate_series(1, 100) AS n;

INSERT INTO products (id, sku, title, price_cents)
SELECT n, format('SKU-%s', lpad(n::text, 4, '0')), format('Product %s', n), 199 + (n * 137) % 5000
FROM generate_series(1, 40) AS n;

INSERT INTO orders (id, customer_id, placed_at, status)
SELECT n, 1 + (n * 37) % 100, timestamptz '2026-02-01 00:00:00+00' + n * interval '3 hours',
       (ARRAY['pending', 'paid', 'shipped', 'cancelled'])[1 + n % 4]
FROM generate_series(1, 250) AS n;

INSERT INTO order_items (order_id, product_id, quantity)
SELECT DISTINCT ON (o, p) o, p, 1 + (o + p) % 5
FROM (SELECT 1 + (n * 13) % 250 AS o, 1 + (n * 7) % 40 AS p FROM generate_series(1, 600) AS n) s
ORDER BY o, p;
