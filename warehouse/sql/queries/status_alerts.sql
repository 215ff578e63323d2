-- status_alerts: the latest $limit alert events (firing and resolved) of the warehouse's
-- alerts view, most recent first, for the ClimateWatch page (warehouse.status).

SELECT emitted_at, status, severity, rule, region, window_start, window_end,
       value, threshold, message, alert_id
FROM alerts
ORDER BY emitted_at DESC NULLS LAST, window_start DESC, alert_id
LIMIT $limit;
