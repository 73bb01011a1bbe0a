"""The store: models, the database, and one module per noun. It takes the locks and never
decides an HTTP answer."""
