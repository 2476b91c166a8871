"""DEBUG_ARTIFACTS_DIR: graph_module.py and graph.txt, with node names stable from run to run."""

import ast

from ditto.pipeline import load_program


def test_graph_artifacts_are_written_and_stable(tmp_path, monkeypatch):
    texts = []
    for run in range(2):
        folder = tmp_path / f"run{run}"
        monkeypatch.setenv("DEBUG_ARTIFACTS_DIR", str(folder))
        load_program("tiny-qwen2")
        texts.append(((folder / "graph_module.py").read_text(), (folder / "graph.txt").read_text()))
    assert texts[0] == texts[1]
    code, table = texts[0]
    ast.parse(code)
    rows = [line.split("\t") for line in table.splitlines()]
    assert all(len(r) == 4 for r in rows)
    by_name = {r[0]: r for r in rows}
    assert by_name["input_ids"][1:] == ["placeholder", "input_ids", "[s70] int32"] or by_name["input_ids"][3].endswith("int32")
    attention = [r for r in rows if r[2] == "ditto.gpt_attention.default"]
    assert [r[0] for r in attention] == ["gpt_attention", "gpt_attention_1"]
    assert rows[-1][1] == "output"
