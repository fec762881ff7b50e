"""Which way imports run in the whole package (read from the source, lazy imports included): no module
reaches itself through its imports (the optimizer package and its builder, the checkpoint readers and
their dispatcher, the deploy exports and their folder writer were once circles), and the
models know no file format, no data and no trainer."""
from test_data_source_spec import _module_graph


def test_no_import_circles_anywhere():
    graph = _module_graph()

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    circles = sorted(name for name in graph if name in reachable(name))
    assert not circles, f"modules on an import circle: {circles}"


def test_models_import_only_models():
    """... and the user-error classes (`vitjax.errors`, a leaf importing nothing)."""
    graph = _module_graph()
    outside = {name: sorted(m for m in imports if not m.startswith(("vitjax.models", "vitjax.errors")))
               for name, imports in graph.items() if name.startswith("vitjax.models")}
    assert not any(outside.values()), f"vitjax.models reaches outside itself: {outside}"


def test_trackers_import_only_trackers_and_leaves():
    """`vitjax.config` imports the trackers' defaults (`vitjax.trackers.config`), so a tracker importing
    the config module would be an arrow up the layers (once `trackers/` did, for `config.to_dict`)."""
    from test_data_source_spec import LEAVES

    graph = _module_graph()
    up = {name: sorted(m for m in imports if not m.startswith(("vitjax.trackers", *LEAVES)))
          for name, imports in graph.items() if name.startswith("vitjax.trackers")}
    assert not any(up.values()), f"vitjax.trackers reaches above itself: {up}"
