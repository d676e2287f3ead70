"""Catalog datasets of the project: a registered model, loaded by alias or version,
a Delta table whose write conflicts are explained, and JSON files of typed
records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mlflow
from delta.tables import DeltaTable
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets.json import JSONDataset
from kedro_datasets.spark import SparkDatasetV2
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from book_recommender import aliases
from book_recommender.errors import ProjectError
from book_recommender.models import records
from book_recommender.serving import Bundle, Recommender


class RegistryError(ProjectError, DatasetError):
    """The registry has no recommender where scoring was told to look."""


class ConcurrentCommitError(ProjectError, DatasetError):
    """Another run committed the Delta table first."""


@dataclass(frozen=True)
class RegisteredRecommender:
    """A registered recommender version and what it serves from."""

    name: str
    version: int
    bundle: Bundle
    tags: dict[str, str]


class RegisteredRecommenderDataset(AbstractDataset[dict, RegisteredRecommender]):
    """Loads ``models:/<model_name>@<alias>`` (or ``/<model_version>``, which wins) from
    the MLflow registry as a ``serving.Recommender``.

    Only the registry is needed, not the training run's local files, so a
    machine that never trained can score. A version without the tags training
    gives it in the same call that creates it, or that is not a recommender,
    is refused.
    """

    def __init__(
        self,
        model_name: str,
        alias: str | None = "champion",
        model_version: int | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._model_name = model_name
        self._alias = alias or "champion"
        # Not "version": Kedro reserves that key for its own dataset versioning.
        self._version = (
            None if model_version in (None, "", "null") else str(model_version)
        )
        self.metadata = metadata

    @property
    def _asked(self) -> str:
        if self._version is not None:
            return f"version {self._version}"
        return f"alias '{self._alias}'"

    def _describe(self) -> dict[str, Any]:
        return {"model_name": self._model_name, "asked": self._asked}

    def _version_entry(self, client: MlflowClient):
        try:
            if self._version is not None:
                return client.get_model_version(self._model_name, self._version)
            # In the run that registered it, the alias is staged: it moves
            # once the run (this scoring included) succeeds.
            pending = aliases.staged(self._model_name, self._alias)
            if pending is not None:
                return client.get_model_version(self._model_name, str(pending))
            return client.get_model_version_by_alias(self._model_name, self._alias)
        except MlflowException as error:
            try:
                versions = sorted(
                    int(v.version)
                    for v in client.search_model_versions(f"name='{self._model_name}'")
                )
                named = client.get_registered_model(self._model_name).aliases
            except MlflowException:
                versions, named = [], {}
            existing = (
                f"it has versions {versions} and aliases {named or '{}'}"
                if versions
                else "no version of it is registered (run the data_science "
                "pipeline first)"
            )
            raise RegistryError(
                f"Registered model '{self._model_name}' has no {self._asked} in the "
                f"registry at {mlflow.get_registry_uri()}: {existing}. Choose with "
                "`kedro run --pipeline scoring --params scoring.model_alias=<alias>` "
                "or `scoring.model_version=<n>`."
            ) from error

    def load(self) -> RegisteredRecommender:
        client = MlflowClient()
        entry = self._version_entry(client)
        where = f"'{self._model_name}' version {entry.version} ({self._asked})"
        if "role" not in entry.tags:
            raise RegistryError(
                f"{where} has no 'role' tag: its registration did not finish (the "
                "run was interrupted). Score another version, or retrain."
            )
        model = mlflow.pyfunc.load_model(f"models:/{self._model_name}/{entry.version}")
        try:
            python_model = model.unwrap_python_model()
        except MlflowException:
            python_model = None
        if not isinstance(python_model, Recommender):
            raise RegistryError(
                f"{where} is a '{entry.tags['role']}' model, not a recommender "
                "registered by this version of the project (serving.Recommender). "
                "Score the recommender champion's alias, or retrain."
            )
        return RegisteredRecommender(
            name=self._model_name,
            version=int(entry.version),
            bundle=python_model.bundle,
            tags=dict(entry.tags),
        )

    def save(self, data: dict[str, Any]) -> None:
        """Takes what training registered (``register_champions``). Nothing is
        written: the registry already holds it. Saving orders the full run
        (scoring after registration) and checks that training registered the
        model scoring reads."""
        if data["model_name"] != self._model_name:
            raise RegistryError(
                f"Training registered '{data['model_name']}' (registry.model_name) "
                f"but scoring reads '{self._model_name}' (the catalog's "
                "champion_recommender.model_name): make them the same."
            )


class DeltaTableDataset(SparkDatasetV2):
    """A Delta table written by Spark (``SparkDatasetV2``, ``file_format: delta``)
    that says plainly, in one line, when another writer committed first."""

    def _latest_commit(self, data: Any) -> str:
        """The table's latest version and when it was committed (the other
        run's), as far as the table can tell."""
        try:
            latest = (
                DeltaTable.forPath(data.sparkSession, self._spark_path)
                .history(1)
                .select("version", "timestamp")
                .first()
            )
        except Exception:  # noqa: BLE001 - the explanation must not fail too
            return "a new version"
        return (
            f"version {latest['version']} (at {latest['timestamp']:%Y-%m-%d %H:%M:%S})"
        )

    def _save(self, data: Any) -> None:
        try:
            super()._save(data)
        except Exception as error:
            if (
                "DELTA_CONCURRENT" not in str(error)
                and "Concurrent" not in type(error).__name__
            ):
                raise
            kind = str(error).split("]", 1)[0].lstrip("[").split()[0][:60]
            # from None: the conflict is expected and this line says all of it;
            # Spark's stack for it would bury the line.
            raise ConcurrentCommitError(
                f"Another run committed {self._latest_commit(data)} of the Delta "
                f"table at {self._filepath} while this one was writing ({kind}). "
                "Nothing of this run was written and the other run's version is "
                "complete; rerunning is safe."
            ) from None


class RecordsDataset(JSONDataset):
    """A JSON file of typed records (``models.records``): records in, records
    out, plain JSON on disk. ``record`` names what the file holds
    (``tuning_results``, ``candidate_metrics`` or ``champions``)."""

    def __init__(self, *, record: str, **kwargs: Any) -> None:
        if record not in records.READERS:
            raise DatasetError(
                f"RecordsDataset record must be one of {sorted(records.READERS)}; "
                f"found {record!r}"
            )
        super().__init__(**kwargs)
        self._record = record

    def load(self) -> Any:
        return records.from_json(self._record, super().load())

    def save(self, data: Any) -> None:
        super().save(records.to_json(data))
