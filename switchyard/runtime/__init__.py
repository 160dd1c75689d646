"""Running graphs: the run facade (`run`, `arun`, `resume`), streaming, crash resume, registry."""
