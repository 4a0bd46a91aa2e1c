"""Print jobs: the library of sliced files, the queue, the dispatcher, history (design.md §1)."""
