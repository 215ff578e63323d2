"""The words of a notification: subject, e-mail body, SMS, Slack and JSON payloads, ids."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from include.events import Alert
from streaming.notify.messages import (
    SMS_LIMIT,
    SUBJECT_LIMIT,
    Notification,
    json_payload,
    measure,
    region_link,
    slack_payload,
    sms_text,
    subject,
    text_body,
)

UI = "http://airflow.example:8080/"
HEAT = Alert(
    alert_id="heat-north-0123456789abcdef",
    rule="heat",
    severity="warning",
    region="north",
    window_start="2026-07-01T12:00:00.000Z",
    window_end="2026-07-01T12:01:00.000Z",
    value=34.2,
    threshold=30.0,
    status="firing",
    message="mean 34.2 °C above 30 °C in north",
    emitted_at="2026-07-01T12:01:31.000Z",
)
RESOLVED = replace(
    HEAT,
    window_end="2026-07-01T12:40:00.000Z",
    value=28.9,
    status="resolved",
    message="resolved: mean 28.9 °C above 30 °C in north",
)


def one(alert: Alert = HEAT, sequence: int = 0) -> Notification:
    return Notification("on-call", (alert,), "rule=heat/region=north", sequence)


@pytest.mark.unit
class TestNotification:
    def test_an_empty_group_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least one alert"):
            Notification("on-call", (), "g")

    def test_a_list_of_alerts_becomes_a_tuple(self) -> None:
        notification = Notification("on-call", [HEAT], "g")  # type: ignore[arg-type]
        assert notification.alerts == (HEAT,)
        assert hash(notification)

    def test_status_is_firing_while_any_alert_fires(self) -> None:
        other = replace(RESOLVED, alert_id="cold-north-1", rule="cold")
        assert Notification("r", (other, HEAT), "g").status == "firing"
        assert Notification("r", (RESOLVED, other), "g").status == "resolved"

    def test_delivery_id_is_deterministic_32_hex(self) -> None:
        first, again = one(), one()
        assert first.delivery_id == again.delivery_id
        assert re.fullmatch(r"[0-9a-f]{32}", first.delivery_id)
        # the group key is not part of it: same receiver, alerts and states, same id
        assert replace(first, group_key="other").delivery_id == first.delivery_id

    def test_delivery_id_differs_by_sequence_status_receiver_and_order(self) -> None:
        other = replace(HEAT, alert_id="heat-south-1", region="south")
        ids = {
            one().delivery_id,
            one(sequence=1).delivery_id,
            one(sequence=2).delivery_id,
            one(RESOLVED).delivery_id,
            replace(one(), receiver="e-mail").delivery_id,
            Notification("on-call", (HEAT, other), "g").delivery_id,
            Notification("on-call", (other, HEAT), "g").delivery_id,
        }
        assert len(ids) == 7

    def test_delivery_id_fields_cannot_run_into_each_other(self) -> None:
        a = Notification("a:b", (replace(HEAT, alert_id="c"),), "g")
        b = Notification("a", (replace(HEAT, alert_id="b:c"),), "g")
        assert a.delivery_id != b.delivery_id


@pytest.mark.unit
class TestLinks:
    def test_region_link_quotes_the_region(self) -> None:
        assert region_link(UI, "north") == "http://airflow.example:8080/climatewatch/?region=north"
        assert region_link("http://x", "île de/France&co") == (
            "http://x/climatewatch/?region=%C3%AEle%20de%2FFrance%26co"
        )

    def test_no_base_no_link(self) -> None:
        assert region_link(None, "north") is None
        assert region_link("", "north") is None
        assert "http" not in text_body(one(), None)
        assert "link" not in orjson.loads(json_payload(one(), None))


@pytest.mark.unit
class TestSubject:
    def test_one_alert(self) -> None:
        assert subject(one()) == "[ClimateWatch] FIRING heat (warning) in north"
        assert subject(one(RESOLVED)) == "[ClimateWatch] RESOLVED heat (warning) in north"

    def test_reminder(self) -> None:
        assert (
            subject(one(sequence=2)) == "[ClimateWatch] FIRING heat (warning) in north (reminder 2)"
        )

    def test_several_alerts(self) -> None:
        alerts = tuple(replace(HEAT, alert_id=f"a{i}", rule=r) for i, r in enumerate("xyz"))
        assert subject(Notification("r", alerts, "g")) == "[ClimateWatch] 3 alerts FIRING in north"
        mixed = (*alerts[:2], replace(RESOLVED, region="south"))
        assert subject(Notification("r", mixed, "g")) == (
            "[ClimateWatch] 3 alerts: 2 FIRING, 1 RESOLVED in 2 regions"
        )
        assert subject(Notification("r", (RESOLVED, RESOLVED), "g")) == (
            "[ClimateWatch] 2 alerts RESOLVED in north"
        )

    def test_a_line_break_in_a_field_cannot_make_a_second_header(self) -> None:
        evil = replace(HEAT, region="north\r\nBcc: victim@example.org")
        line = subject(one(evil))
        assert line == "[ClimateWatch] FIRING heat (warning) in north Bcc: victim@example.org"
        huge = subject(one(replace(HEAT, rule="x" * 500, region="y" * 500)))
        assert len(huge) <= SUBJECT_LIMIT and huge.endswith("y…")


@pytest.mark.unit
class TestTextBody:
    def test_has_what_a_person_needs(self) -> None:
        body = text_body(one(), UI)
        for expected in (
            "FIRING: heat (warning) in north",
            "mean 34.2 °C, threshold 30.0 °C",
            "since:    2026-07-01 12:00 UTC",
            "mean 34.2 °C above 30 °C in north",
            "heat-north-0123456789abcdef",
            "http://airflow.example:8080/climatewatch/?region=north",
        ):
            assert expected in body

    def test_resolved_says_resolved_and_when(self) -> None:
        body = text_body(one(RESOLVED), UI)
        assert body.startswith("RESOLVED: heat (warning) in north")
        assert "resolved: 2026-07-01 12:40 UTC" in body
        assert "FIRING" not in body

    def test_missing_numbers_and_times(self) -> None:
        odd = replace(HEAT, value=None, threshold=math.nan, window_start="", message="")
        body = text_body(one(odd), None)
        assert "mean n/a, threshold n/a" in body
        assert "since:    unknown" in body
        assert "message:" not in body

    def test_an_offset_time_is_shown_in_utc(self) -> None:
        body = text_body(one(replace(HEAT, window_start="2026-07-01T14:00:00+02:00")), None)
        assert "2026-07-01 12:00 UTC" in body

    def test_reminder_and_groups(self) -> None:
        other = replace(HEAT, alert_id="heat-south-1", region="south")
        body = text_body(Notification("r", (HEAT, other), "g", sequence=3), UI)
        assert body.startswith("ClimateWatch: 2 alerts FIRING in 2 regions.")
        assert "Reminder 3: still firing." in body
        assert "?region=north" in body and "?region=south" in body

    @pytest.mark.parametrize(
        ("rule", "value", "threshold", "expected"),
        [
            ("cold", -12.04, -10.0, "mean -12.0 °C, threshold -10.0 °C"),
            ("drastic_change", 6.3, 5.0, "change +6.3 °C, limit ±5.0 °C"),
            ("silent_sensor", 3.0, 600.0, "3 sensor(s) silent for 600 s"),
            ("bad_data", 0.125, 0.05, "12.5 % of records invalid, limit 5.0 %"),
            ("region_silent", 650.4, 600.0, "silent for 650 s, limit 600 s"),
            ("someday_rule", 1.5, None, "value 1.5, threshold n/a"),
            ("heat", math.inf, -math.inf, "mean ∞ °C, threshold -∞ °C"),
            ("heat", 1e300, 30, "mean 1e+300 °C, threshold 30.0 °C"),
        ],
    )
    def test_value_against_threshold_in_the_rules_terms(
        self, rule: str, value: float | None, threshold: float | None, expected: str
    ) -> None:
        assert measure(replace(HEAT, rule=rule, value=value, threshold=threshold)) == expected


@pytest.mark.unit
class TestSms:
    def test_essentials_and_link(self) -> None:
        text = sms_text(one(), UI)
        assert text == (
            "ClimateWatch: FIRING heat (warning) in north: mean 34.2 °C, threshold 30.0 °C, "
            "since 2026-07-01 12:00 UTC http://airflow.example:8080/climatewatch/?region=north"
        )
        assert sms_text(one(RESOLVED), None).startswith("ClimateWatch: RESOLVED heat")
        assert sms_text(one(sequence=1), None).startswith("ClimateWatch reminder 1: FIRING")

    def test_a_big_group_is_cut_cleanly_with_a_count(self) -> None:
        alerts = tuple(replace(HEAT, alert_id=f"heat-{i}", region=f"region-{i}") for i in range(30))
        text = sms_text(Notification("r", alerts, "g"), UI)
        assert len(text) <= SMS_LIMIT
        shown = text.count("FIRING")
        assert f"+{30 - shown} more" in text
        assert text.endswith(" http://airflow.example:8080/climatewatch/")  # several regions

    def test_one_huge_alert_is_cut_with_an_ellipsis_and_keeps_the_link_whole(self) -> None:
        long = "r" * 1000
        huge = replace(HEAT, rule=long, severity=long, region=long, window_start=long)
        ui = "https://airflow." + "x" * 80 + ".example"
        text = sms_text(Notification("r", (huge, huge), "g"), ui)
        assert len(text) <= SMS_LIMIT
        assert "…" in text and "+1 more" in text
        # the region's link would not fit: the page's, whole
        assert text.endswith(f" {ui}/climatewatch/")

    def test_a_link_too_long_for_an_sms_is_left_out(self) -> None:
        text = sms_text(one(), "http://" + "x" * 300)
        assert "http" not in text and len(text) <= SMS_LIMIT


@pytest.mark.unit
class TestPayloads:
    def test_slack_text_and_alerts(self) -> None:
        body = orjson.loads(slack_payload(one(), UI))
        assert body["text"].startswith(":fire: *FIRING* heat (warning) in north")
        assert "mean 34.2 °C, threshold 30.0 °C, since 2026-07-01 12:00 UTC" in body["text"]
        assert (
            "<http://airflow.example:8080/climatewatch/?region=north|north in ClimateWatch>"
            in (body["text"])
        )
        assert body["alerts"] == [orjson.loads(HEAT.to_json())]
        resolved = orjson.loads(slack_payload(one(RESOLVED), None))["text"]
        assert resolved.startswith(":white_check_mark: *RESOLVED*")

    def test_slack_markup_in_fields_is_escaped(self) -> None:
        text = orjson.loads(slack_payload(one(replace(HEAT, message="<!channel> & <b>")), None))[
            "text"
        ]
        assert "&lt;!channel&gt; &amp; &lt;b&gt;" in text and "<!channel>" not in text

    def test_slack_lists_at_most_20_alerts_in_text_and_all_in_alerts(self) -> None:
        alerts = tuple(replace(HEAT, alert_id=f"a{i}") for i in range(25))
        body = orjson.loads(slack_payload(Notification("r", alerts, "g", 1), None))
        assert body["text"].startswith("*ClimateWatch: 25 alerts FIRING* (reminder 1)")
        assert body["text"].endswith("… and 5 more")
        assert len(body["alerts"]) == 25

    def test_json_payload(self) -> None:
        notification = Notification("on-call", (HEAT, RESOLVED), "rule=heat", 0)
        body = orjson.loads(json_payload(notification, UI))
        assert body == {
            "delivery_id": notification.delivery_id,
            "receiver": "on-call",
            "group_key": "rule=heat",
            "status": "firing",
            "sequence": 0,
            "link": "http://airflow.example:8080/climatewatch/?region=north",
            "alerts": [orjson.loads(HEAT.to_json()), orjson.loads(RESOLVED.to_json())],
        }

    def test_nan_is_null_in_json(self) -> None:
        body = orjson.loads(json_payload(one(replace(HEAT, value=math.nan)), None))
        assert body["alerts"][0]["value"] is None


# --- never raises -------------------------------------------------------------------------------
any_text = st.text(max_size=60) | st.sampled_from(
    ["", " ", "\r\n", "\x00", "\u2028", "\u202enorth", "🌡️🔥", "e\u0301", "\ud800", "a" * 500]
)
any_number = (
    st.none()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(2**80), max_value=2**80)
)
any_time = any_text | st.sampled_from(
    ["2026-07-01T12:00:00.000Z", "2026-07-01T12:00:00+14:00", "0001-01-01T00:00:00+01:00"]
)
alerts = st.builds(
    Alert,
    alert_id=any_text,
    rule=any_text
    | st.sampled_from(["heat", "cold", "drastic_change", "silent_sensor", "bad_data"]),
    severity=any_text | st.sampled_from(["info", "warning", "critical"]),
    region=any_text,
    window_start=any_time,
    window_end=any_time,
    value=any_number,
    threshold=any_number,
    status=any_text | st.sampled_from(["firing", "resolved"]),
    message=any_text,
    emitted_at=any_time,
)
notifications = st.builds(
    Notification,
    receiver=any_text,
    alerts=st.lists(alerts, min_size=1, max_size=4).map(tuple),
    group_key=any_text,
    sequence=st.integers(min_value=0, max_value=10**6),
)


@pytest.mark.unit
@settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    notification=notifications,
    ui_base_url=st.none() | st.just(UI) | any_text,
)
def test_the_message_functions_never_raise(
    notification: Notification, ui_base_url: str | None
) -> None:
    """Any strings (empty, control characters, lone surrogates), any numbers (NaN, ±inf,
    None, huge ints): every text is produced; one-line texts stay one line and short."""
    line = subject(notification)
    assert "\n" not in line and "\r" not in line and len(line) <= SUBJECT_LIMIT
    sms = sms_text(notification, ui_base_url)
    assert len(sms) <= SMS_LIMIT and "\n" not in sms
    assert text_body(notification, ui_base_url).endswith("\n")
    assert isinstance(orjson.loads(slack_payload(notification, ui_base_url))["text"], str)
    body = orjson.loads(json_payload(notification, ui_base_url))
    assert body["delivery_id"] == notification.delivery_id
    assert len(body["alerts"]) == len(notification.alerts)
