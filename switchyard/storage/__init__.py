"""Where state lives: checkpointer and store openers, retention (pruning), the dead-letter queue."""
