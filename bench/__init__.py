"""tickwire benchmarks: each workload runs its baseline in the same run and reports the ratio."""
