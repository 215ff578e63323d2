"""The ClimateWatch page in the Airflow UI: a FastAPI app on the API server and a
navigation entry that shows it.

Thin on purpose: the app and the page live in ``include/ops/ui`` (tested without Airflow).
The app requires an Airflow session (see ``plugins/README.md``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from include.ops.ui.app import create_app

URL_PREFIX = "/climatewatch"


class ClimateWatchPlugin(AirflowPlugin):
    """Mounts the ClimateWatch app at ``/climatewatch`` and adds "ClimateWatch" to the nav."""

    name = "climatewatch"
    fastapi_apps: ClassVar[list[dict[str, Any]]] = [
        {"app": create_app(airflow_auth=True), "url_prefix": URL_PREFIX, "name": "ClimateWatch"}
    ]
    external_views: ClassVar[list[dict[str, Any]]] = [
        {
            "name": "ClimateWatch",
            # Relative: the UI resolves it against its <base href>, so the page is found
            # also when Airflow is served below a sub-path (api.base_url).
            "href": "climatewatch/",
            "icon": "climatewatch/icon.svg",
            "destination": "nav",
            "url_route": "climatewatch",
            "nav_top_level": True,
        }
    ]
