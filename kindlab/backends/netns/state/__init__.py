"""A lab's state on disk: the store (records, pods, statuses, events) and the host-path registry."""
