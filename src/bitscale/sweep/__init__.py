"""Many runs: sweep files, the results store, executors."""
