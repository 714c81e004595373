"""Analytics: daily event counts kept up to date, and CSV exports of a tenant's data."""
