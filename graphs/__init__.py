"""Pattern graphs: one module per pattern, each with `build_<pattern>_graph` and a demo `graph`."""
