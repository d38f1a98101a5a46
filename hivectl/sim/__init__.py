"""`hivectl simulate riders`: a fleet of simulated riders against a real server.

Pure parts, each testable alone: `plan` (riders, routes, churn schedule from a seed),
`ledger` (which presence events the server must publish, matched against those seen),
`recorder` (mergeable latency histograms), `report` (counters -> the report and its
thresholds) and `render` (Rich renderables from data). `driver` runs a plan with
`hivectl.client` and measures it.
"""
