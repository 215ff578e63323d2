"""Great Expectations for one run: a file context under the quality folder, one
checkpoint per batch (so results feed Data Docs), and the rows a failed expectation names.

Imported inside the functions that validate: Great Expectations takes seconds to import.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from include.settings import Settings
from warehouse.quality.expectations import SUITE_NAME, BatchFacts, build_suite

if TYPE_CHECKING:
    import pandas as pd

DATASOURCE = "climatewatch_archive"
ASSET = "readings"
BATCH_DEFINITION = "archive_batch"
DOCS_SITE = "climatewatch"
# What names an unexpected row: where it is counted (date, region) and which reading it is
# (a batch is one partition's offsets).
UNEXPECTED_INDEX = ("date", "region", "kafka_offset")


# --- Great Expectations -----------------------------------------------------------------------
class GxValidator:
    """A file-backed Great Expectations context under ``<data_dir>/quality/gx``.

    File-backed so every batch's result is kept and Data Docs list them all. Analytics
    off and progress bars off: no network calls, no noise in task logs.
    """

    def __init__(self, settings: Settings) -> None:
        os.environ["GX_ANALYTICS_ENABLED"] = "False"
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        for name in list(logging.root.manager.loggerDict):  # some are named by file path
            if "great_expectations" in name:
                logging.getLogger(name).setLevel(logging.WARNING)

        self.gx = gx
        root = settings.quality_dir
        root.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(root))
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.analytics_enabled = False
        context.variables.save()
        docs = str(settings.data_docs_dir.resolve())
        if DOCS_SITE not in context.get_site_names():
            context.add_data_docs_site(
                site_name=DOCS_SITE,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": docs,
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        source = context.data_sources.add_or_update_pandas(DATASOURCE)
        asset = next((a for a in source.assets if a.name == ASSET), None)
        asset = asset or source.add_dataframe_asset(ASSET)
        definition = next((b for b in asset.batch_definitions if b.name == BATCH_DEFINITION), None)
        self.batch_definition = definition or asset.add_batch_definition_whole_dataframe(
            BATCH_DEFINITION
        )
        self.context = context

    def validate(self, facts: BatchFacts, frame: pd.DataFrame) -> Any:
        """Run the batch's suite through a checkpoint: the result is stored for Data Docs."""
        from great_expectations.core.run_identifier import RunIdentifier

        gx = self.gx
        suite = self.context.suites.add_or_update(build_suite(facts))
        definition = self.context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=SUITE_NAME, data=self.batch_definition, suite=suite)
        )
        checkpoint = self.context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=SUITE_NAME,
                validation_definitions=[definition],
                result_format={"result_format": "SUMMARY"},
            )
        )
        result = checkpoint.run(
            batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=facts.batch_id)
        )
        return next(iter(result.run_results.values()))

    def unexpected_rows(self, frame: pd.DataFrame, config: Any) -> list[dict[str, Any]]:
        """The unexpected rows of one failed row-level expectation: each one's
        :data:`UNEXPECTED_INDEX` columns and the checked value(s).

        Asked only for failures (rare): the summary counts them per (date, region), the
        quarantine sets them aside by Kafka offset.
        """
        dated = frame.assign(date=frame["ts"].dt.strftime("%Y-%m-%d"))
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": dated})
        expectation = config.to_domain_obj() if hasattr(config, "to_domain_obj") else config
        result = batch.validate(
            expectation,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": list(UNEXPECTED_INDEX),
                "return_unexpected_index_query": False,
            },
        )
        return list(result.result.get("unexpected_index_list") or ())

    def build_docs(self) -> str:
        urls = self.context.build_data_docs(site_names=[DOCS_SITE])
        return urls.get(DOCS_SITE, "")
