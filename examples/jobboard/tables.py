"""The job board's tables (SQLAlchemy Core), which the web app and its jobs share. They
live in the PostgreSQL database Conveyor uses, beside its own."""

from __future__ import annotations

from sqlalchemy import Column, Date, ForeignKey, Integer, MetaData, Table, Text

metadata = MetaData()

users = Table(
    "jobboard_users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
)

follows = Table(
    "jobboard_follows",
    metadata,
    Column("follower_id", ForeignKey("jobboard_users.id"), primary_key=True),
    Column("followed_id", ForeignKey("jobboard_users.id"), primary_key=True),
)

employers = Table(
    "jobboard_employers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("ats_board", Text, nullable=False),  # its board on the applicant-tracking system
    Column("customer", Text, nullable=False),  # its customer id at the payments provider
    Column("plan_cents", Integer, nullable=False),  # a month's membership
    Column("paid_through", Date, nullable=False),
)

postings = Table(
    "jobboard_postings",
    metadata,
    Column("employer_id", ForeignKey("jobboard_employers.id"), primary_key=True),
    Column("ats_id", Text, primary_key=True),
    Column("title", Text, nullable=False),
)
