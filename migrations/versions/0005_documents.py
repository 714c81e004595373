"""Documents: what was read from each uploaded document, searchable per tenant.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

INDEXES = {
    # GET /v1/documents?email=…: one tenant's documents from one address, newest first.
    "ix_documents_tenant_email_created": "ON documents (tenant_id, email, created_at DESC, job_id DESC)",
    # GET /v1/documents: a tenant's documents newest first, keyset-paginated.
    "ix_documents_tenant_created": "ON documents (tenant_id, created_at DESC, job_id DESC)",
    # GET /v1/documents?metadata.KEY=value: containment (metadata @> '{"KEY": value}').
    "ix_documents_metadata": "ON documents USING gin (metadata jsonb_path_ops)",
}


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE documents (
            job_id uuid PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
            tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
            content_type text NOT NULL,
            size bigint NOT NULL,
            sha256 text NOT NULL,
            page_count integer,
            text text,
            pages jsonb,
            fields jsonb,
            email text,
            name text,
            metadata jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL,
            extracted_at timestamptz
        )
        """
    )
    for name, definition in INDEXES.items():
        op.execute(f"CREATE INDEX {name} {definition}")


def downgrade() -> None:
    op.execute("DROP TABLE documents")
