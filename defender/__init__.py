"""The defender: a task's sidecar that scans its containers and delivers the reports."""
