-- report_alerts: the alerts that fired on $day (window start date), one row per alert_id,
-- with when it resolved. The speed layer may publish the same firing event more than
-- once (reprocessing keeps the alert_id): the first one counts. The resolved event is
-- paired by alert_id whatever its date (an alert may resolve after midnight).

WITH firing AS (
    SELECT
        alert_id,
        arg_min(rule, emitted_at)           AS rule,
        arg_min(severity, emitted_at)       AS severity,
        arg_min(region, emitted_at)         AS region,
        arg_min(window_start, emitted_at)   AS window_start,
        arg_min(window_end, emitted_at)     AS window_end,
        arg_min(value, emitted_at)          AS value,
        arg_min(threshold, emitted_at)      AS threshold,
        arg_min(message, emitted_at)        AS message,
        min(emitted_at)                     AS fired_at
    FROM alerts
    WHERE status = 'firing' AND date = $day
    GROUP BY alert_id
),
resolved AS (
    SELECT alert_id, min(emitted_at) AS resolved_at
    FROM alerts
    WHERE status = 'resolved' AND alert_id IN (SELECT alert_id FROM firing)
    GROUP BY alert_id
)
SELECT
    firing.alert_id,
    firing.rule,
    firing.severity,
    firing.region,
    firing.window_start,
    firing.window_end,
    firing.value,
    firing.threshold,
    firing.message,
    firing.fired_at,
    resolved.resolved_at
FROM firing
LEFT JOIN resolved USING (alert_id)
ORDER BY firing.window_start, firing.region, firing.rule, firing.alert_id;
