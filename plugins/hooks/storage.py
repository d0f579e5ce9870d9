"""``StorageHook``: the credentials of an object-store ``storage.root``, from an Airflow Connection.

A team that runs modelyard in its own Airflow keeps cloud credentials where Airflow keeps
them: a Connection (the metadata database, a secrets backend, ``AIRFLOW_CONN_*``). Before each
modelyard task runs (``dag_support.DEFAULT_ARGS["pre_execute"]``), this hook reads the
Connection named by ``storage.conn_id`` and exports its credentials to the variables the object
store's client reads (s3fs and MLflow's S3 client through botocore), so the task and every
process it starts (a chunk's pool of workers) reach the bucket with them. The config file never
holds a secret (``storage.check_no_secrets``).

Which Connection:

- ``storage.conn_id: my_s3`` names one; it must exist, or the task fails saying so.
- Unset, an ``s3://`` root uses ``aws_default`` when that Connection exists (the Amazon
  provider's default), and otherwise leaves the environment (``AWS_*``, ``~/.aws``, an instance
  role or IRSA) to the client.
- A local root needs nothing and looks nothing up.

Connection fields, as the Amazon provider's ``aws`` type lays them out: ``login`` /
``password`` are the access key id / secret (or ``aws_access_key_id`` / ``aws_secret_access_key``
in ``extra``); ``extra`` may hold ``aws_session_token``, ``region_name`` and ``endpoint_url``
(an S3-compatible server such as MinIO). What the Connection gives wins over the environment.

Example: ``AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "login": "AKIA...", "password": "...",
"extra": {"region_name": "eu-west-1"}}'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from modelyard.core import storage

if TYPE_CHECKING:
    from modelyard.core.config import Storage

AWS_TYPES = ("aws", "s3", "amazon")  # "aws" is the Amazon provider's; the others are older spellings
# The Connection's field (login/password) or extra key -> the variable botocore reads.
AWS_VARIABLES = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "region_name": "AWS_DEFAULT_REGION",
    "endpoint_url": "AWS_ENDPOINT_URL_S3",
}


class StorageHook(BaseHook):
    """Export an object-store Connection's credentials to the environment the storage client reads."""

    conn_name_attr = "storage_conn_id"
    default_conn_name = "aws_default"
    conn_type = "aws"
    hook_name = "Object store (modelyard storage.root)"

    def __init__(self, settings: Storage, storage_conn_id: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.storage_conn_id = storage_conn_id or settings.conn_id

    def export_credentials(self, environ: MutableMapping[str, str] | None = None) -> list[str]:
        """Set the credential variables from the Connection; the names set (never the values).

        Raises:
            StorageError: ``storage.conn_id`` names a Connection that does not exist, or one of a
                type this hook cannot turn into credentials (named, with what to do).
        """
        target: MutableMapping[str, str] = os.environ if environ is None else environ
        root = self.settings.root
        if storage.is_local(root):
            return []
        explicit = self.storage_conn_id is not None
        conn_id = self.storage_conn_id or (self.default_conn_name if storage.protocol_of(root) == "s3" else None)
        if conn_id is None:
            return []
        connection = self._connection(conn_id, explicit)
        if connection is None:
            return []
        variables = credential_variables(conn_id, connection.conn_type, connection.login, connection.password,
                                         connection.extra_dejson)  # fmt: skip
        target.update(variables)
        self.log.info("storage %s: credentials from Connection '%s' (%s)", root, conn_id, ", ".join(sorted(variables)))
        return sorted(variables)

    def _connection(self, conn_id: str, explicit: bool) -> Any:
        from airflow.exceptions import AirflowNotFoundException

        try:
            return self.get_connection(conn_id)
        except AirflowNotFoundException as exc:
            if explicit:
                raise storage.StorageError(
                    f"storage.conn_id: there is no Airflow Connection '{conn_id}'; create it (Admin > Connections, "
                    f"or AIRFLOW_CONN_{conn_id.upper()}) or remove storage.conn_id to use the environment's "
                    "credentials"
                ) from exc
            self.log.info("no Airflow Connection '%s'; the object store client reads the environment", conn_id)
            return None


def credential_variables(
    conn_id: str, conn_type: str | None, login: str | None, password: str | None, extra: Mapping[str, Any]
) -> dict[str, str]:
    """The environment variables an ``aws`` Connection's fields stand for (empty fields left out).

    Raises:
        StorageError: the Connection is of another type (names it and the supported ones).
    """
    if (conn_type or "aws").lower() not in AWS_TYPES:
        raise storage.StorageError(
            f"storage.conn_id: Connection '{conn_id}' is of type '{conn_type}'; modelyard reads object-store "
            f"credentials from a Connection of type {' / '.join(AWS_TYPES)} only; for another store give them "
            "through the environment its client reads (e.g. GOOGLE_APPLICATION_CREDENTIALS)"
        )
    fields = {"aws_access_key_id": login, "aws_secret_access_key": password}
    values = {key: fields.get(key) or extra.get(key) for key in AWS_VARIABLES}
    return {AWS_VARIABLES[key]: str(value) for key, value in values.items() if value}
