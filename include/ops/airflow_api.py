"""A small client of Airflow 3's REST API (``/auth/token`` then ``/api/v2``).

Used by ``make demo`` to show DAG runs and by the end-to-end test to trigger and watch
them; the standard library's HTTP client is enough for these few calls.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from include.errors import ClimateWatchError


@dataclass
class AirflowClient:
    base_url: str
    username: str
    password: str
    timeout_s: float = 10.0
    _token: str | None = field(default=None, repr=False)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._token is None:
            self._token = self._login()
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                self._token = None
            detail = exc.read().decode(errors="replace")[:300]
            raise ClimateWatchError(
                f"Airflow API {method} {path}: HTTP {exc.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ClimateWatchError(f"Airflow API at {self.base_url} unreachable: {exc}") from None

    def _login(self) -> str:
        request = urllib.request.Request(
            f"{self.base_url}/auth/token",
            method="POST",
            data=json.dumps({"username": self.username, "password": self.password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())["access_token"]
        except (urllib.error.URLError, OSError, KeyError) as exc:
            raise ClimateWatchError(f"cannot log in to Airflow at {self.base_url}: {exc}") from None

    def dags(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v2/dags?limit=100")["dags"]

    def import_errors(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/v2/importErrors")["import_errors"]

    def dag_runs(self, dag_id: str, limit: int = 20) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns?limit={limit}&order_by=-run_after"
        return self._request("GET", path)["dag_runs"]

    def trigger(
        self, dag_id: str, logical_date: str | None = None, conf: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")[
            "task_instances"
        ]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1
    ) -> str:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
            f"?map_index={map_index}&full_content=true"
        )
        content = self._request("GET", path)
        if isinstance(content, dict):
            events = content.get("content", [])
            if isinstance(events, list):
                return "\n".join(
                    e.get("event", str(e)) if isinstance(e, dict) else str(e) for e in events
                )
            return str(events)
        return str(content)

    def wait_for_run(
        self, dag_id: str, predicate: Any, timeout_s: float, poll_s: float = 3.0
    ) -> dict[str, Any]:
        """The first run of ``dag_id`` for which ``predicate(run)`` holds, or a timeout error."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for run in self.dag_runs(dag_id):
                if predicate(run):
                    return run
            time.sleep(poll_s)
        states = [(r["dag_run_id"], r["state"]) for r in self.dag_runs(dag_id)]
        raise ClimateWatchError(
            f"{dag_id}: no matching run within {timeout_s:.0f}s (runs: {states})"
        )
