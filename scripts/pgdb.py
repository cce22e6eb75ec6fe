"""Create or drop a scratch PostgreSQL database: ``pgdb.py create|drop|url ADMIN_URL NAME``.

Exit 1 when the server does not answer (callers decide whether that is a skip or a failure).
"""

from __future__ import annotations

import sys

import psycopg
from sqlalchemy.engine import make_url


def main(action: str, admin_url: str, name: str) -> int:
    url = make_url(admin_url)
    if action == "url":
        print(url.set(database=name).render_as_string(hide_password=False))
        return 0
    try:
        with psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.username,
            password=url.password,
            dbname=url.database or "postgres",
            autocommit=True,
            connect_timeout=3,
        ) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if action == "create":
                admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:4]))
