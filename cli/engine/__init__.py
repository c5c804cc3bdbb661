"""The workflow engine: workflow files, the runner and its child processes, launching and the detached supervisor."""
