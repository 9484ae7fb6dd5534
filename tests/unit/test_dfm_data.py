"""Knowledge-tracing importers and splits: each format on small files and on the head of the real shared
files, malformed input named by file:line, one shared vocabulary, and learner splits that never leak."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.data import require_shared
from fixtures.data import shared_data as data_folder

from lyceum_ml.dfm.data import (
    Dataset,
    DatasetSpec,
    learner_split,
    load_dataset,
    read_jsonl,
    read_kt3,
    read_pykt,
    shared_vocab,
    split_by_learner,
    split_dataset,
    split_folds,
    task_order,
)
from lyceum_ml.dfm.simulate import SimConfig


@pytest.fixture(scope="module")
def shared_data() -> Path:
    require_shared("README.md")
    return data_folder()


def write(path: Path, text: str, newline: str = "\n") -> Path:
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def ids(data: Dataset) -> list[tuple[list[str], list[float]]]:
    """Histories with task ids instead of rows: what a file says, independent of the vocabulary."""
    return [([data.tasks[r] for r in rows], list(outcomes)) for rows, outcomes in data.histories]


def head(src: Path, dst: Path, n_lines: int) -> Path:
    with src.open(newline="") as f:
        dst.write_text("".join(next(f) for _ in range(n_lines)), newline="")
    return dst


# --- 3-line format ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_kt3_tolerates_trailing_commas_blank_lines_and_crlf(tmp_path: Path, newline: str) -> None:
    text = "3\n12,7,12,\n1,0,1,\n\n2\n7,100\n0,1\n\n,\n0\n1\n3,\n0.5,\n\n"
    data = read_kt3(write(tmp_path / "a.csv", text, newline))
    assert data.tasks == ["3", "7", "12", "100"]  # numeric ids in numeric order
    assert ids(data) == [(["12", "7", "12"], [1.0, 0.0, 1.0]), (["7", "100"], [0.0, 1.0]), (["3"], [0.5])]
    assert data.learners is None and data.folds is None and data.n_events == 6


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("2\n1,2\n1\n", 3, "1 outcomes where the count line (1) says 2"),
        ("2\n1\n1,0\n", 2, "1 task ids where the count line (1) says 2"),
        ("1\n1\n0\n2\n1,2\n1,x\n", 6, "non-numeric outcome 'x'"),
        ("1\n1\n0\n\n1\n5\n2\n", 7, "outcome '2' outside [0, 1]"),
        ("1\n1\nnan\n", 3, "outside [0, 1]"),
        ("1\na\n0\n", 2, "non-integer task id 'a'"),
        ("two\n1,2\n0,1\n", 1, "expected a count of events"),
        ("1\n1\n0\n2\n1,2\n", 4, "missing its task or outcome line"),
    ],
)
def test_kt3_malformed_input_names_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=rf"bad\.csv:{line}: ") as info:
        read_kt3(path)
    assert message in str(info.value) and str(path) in str(info.value)


# --- pyKT CSV -----------------------------------------------------------------------------------------------
PYKT = 'fold,uid,concepts,responses\n0,u1,"5,3,5,-1,-1","1,0,1,-1,-1"\n1,u2,"3","0"\n0,u3,"10,5","1,1"\n'


def test_pykt_reads_folds_uids_and_drops_padding(tmp_path: Path) -> None:
    data = read_pykt(write(tmp_path / "p.csv", PYKT))
    assert data.tasks == ["3", "5", "10"]
    assert ids(data) == [(["5", "3", "5"], [1.0, 0.0, 1.0]), (["3"], [0.0]), (["10", "5"], [1.0, 1.0])]
    assert data.learners == ["u1", "u2", "u3"] and data.folds == [0, 1, 0]

    train, valid = split_folds(data, valid_fold=0)
    assert train.learners == ["u2"] and valid.learners == ["u1", "u3"] and valid.folds == [0, 0]
    with pytest.raises(ValueError, match="fold 7"):
        split_folds(data, valid_fold=7)
    multi = read_pykt(write(tmp_path / "m.csv", 'fold,uid,concepts,responses\n0,u,"3_7,2,-1","1,0,-1"\n'))
    assert ids(multi) == [(["3_7", "2"], [1.0, 0.0])]  # a multi-concept entry stays one task


def test_pykt_fold_split_refuses_a_learner_in_two_folds(tmp_path: Path) -> None:
    data = read_pykt(write(tmp_path / "p.csv", PYKT + '1,u1,"3","1"\n'))
    with pytest.raises(ValueError, match="u1"):
        split_folds(data, valid_fold=0)


@pytest.mark.parametrize(
    "row, message",
    [
        ('0,u,"1,2","1"', "2 concepts but 1 responses"),
        ('0,u,"1,2","1,y"', "non-numeric outcome 'y'"),
        ('0,u,"1,2","1,3"', "outcome '3' outside [0, 1]"),
        ('x,u,"1","1"', "non-integer fold"),
        ('0,u,"1,x","1,1"', "concept 'x' is not an integer id"),
    ],
)
def test_pykt_malformed_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", f'fold,uid,concepts,responses\n0,ok,"1","1"\n{row}\n')
    with pytest.raises(ValueError, match=r"bad\.csv:3: ") as info:
        read_pykt(path)
    assert message in str(info.value)
    with pytest.raises(ValueError, match=r"bad\.csv:1: missing column\(s\) \['responses'\]"):
        read_pykt(write(tmp_path / "bad.csv", 'fold,uid,concepts\n0,u,"1"\n'))


# --- JSONL --------------------------------------------------------------------------------------------------
def test_jsonl_reads_learners_string_and_integer_tasks(tmp_path: Path) -> None:
    text = (
        '{"learner_id": "ann", "tasks": ["fractions/q1", 4], "outcomes": [1, 0.25]}\n'
        "\n"
        '{"learner_id": 7, "tasks": [], "outcomes": []}\n'
        '{"tasks": ["4"], "outcomes": [0]}\n'
    )
    data = read_jsonl(write(tmp_path / "h.jsonl", text))
    assert data.tasks == ["4", "fractions/q1"]
    assert ids(data) == [(["fractions/q1", "4"], [1.0, 0.25]), ([], []), (["4"], [0.0])]
    assert data.learners == ["ann", "7", "h.jsonl:2"]  # an id-less line is a learner of its own
    assert read_jsonl(write(tmp_path / "n.jsonl", '{"tasks": [1], "outcomes": [1]}\n')).learners is None


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"tasks": [1, 2], "outcomes": [1]}', "2 tasks but 1 outcomes"),
        ('{"tasks": [1], "outcomes": ["1"]}', "non-numeric outcome '1'"),
        ('{"tasks": [1], "outcomes": [true]}', "non-numeric outcome True"),
        ('{"tasks": [1], "outcomes": [-0.5]}', "outcome -0.5 outside [0, 1]"),
        ('{"tasks": [""], "outcomes": [1]}', "task ids must be non-empty"),
        ('{"tasks": [1], "outcomes": [1]', "invalid JSON"),
        ('{"outcomes": [1]}', "expected an object"),
    ],
)
def test_jsonl_malformed_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "bad.jsonl", '{"tasks": [1], "outcomes": [1]}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3: ") as info:
        read_jsonl(path)
    assert message in str(info.value)


# --- vocabulary and splits ----------------------------------------------------------------------------------
def test_shared_vocab_is_the_union_in_a_deterministic_order(tmp_path: Path) -> None:
    a = read_kt3(write(tmp_path / "a.csv", "2\n10,2\n1,0\n"))
    b = read_kt3(write(tmp_path / "b.csv", "2\n2,33\n1,1\n"))
    vocab = shared_vocab(a, b)
    assert vocab.tasks == ["2", "10", "33"] == shared_vocab(b, a).tasks
    assert task_order(["b", "10", "a", "9", "-1"]) == ["-1", "9", "10", "a", "b"]
    for data in (a, b):  # re-numbering keeps every event's task id
        assert ids(data.with_vocab(vocab)) == ids(data)
        assert data.with_vocab(vocab).tasks == vocab.tasks


def test_split_by_learner_never_leaks_a_learner() -> None:
    learners = [f"l{i % 37}" for i in range(200)]  # every learner has several histories (e.g. windows)
    histories = [([i], [1.0]) for i in range(200)]
    for seed in range(5):
        train, valid = learner_split(len(histories), 0.2, seed, learners)
        assert sorted(train + valid) == list(range(200))
        assert not {learners[i] for i in train} & {learners[i] for i in valid}
        assert len({learners[i] for i in valid}) == round(0.2 * 37)
    assert learner_split(200, 0.2, 0, learners) == learner_split(200, 0.2, 0, learners)
    assert learner_split(200, 0.2, 0, learners) != learner_split(200, 0.2, 1, learners)

    tr, va = split_by_learner(histories, 0.1, seed=3)  # without ids every history is its own learner
    assert len(va) == 20 and len(tr) == 180 and sorted(tr + va) == sorted(histories)
    assert split_by_learner(histories[:3], 0.0, 0) == (histories[:3], [])
    assert len(split_by_learner(histories[:2], 0.01, 0)[1]) == 1  # at least one each side
    with pytest.raises(ValueError, match="valid_fraction"):
        split_by_learner(histories, 1.0, 0)


def test_split_dataset_keeps_learner_ids_with_their_histories(tmp_path: Path) -> None:
    lines = [f'{{"learner_id": "l{i % 5}", "tasks": [{i}], "outcomes": [1]}}' for i in range(30)]
    data = read_jsonl(write(tmp_path / "h.jsonl", "\n".join(lines)))
    train, valid = split_dataset(data, 0.4, seed=0)
    assert len(set(valid.learners or [])) == 2 and not set(train.learners or []) & set(valid.learners or [])
    for part in (train, valid):  # each history keeps its learner (task i belongs to learner i % 5)
        owners = [f"l{int(part.tasks[rows[0]]) % 5}" for rows, _ in part.histories]
        assert owners == part.learners


def test_load_dataset_for_every_format(tmp_path: Path) -> None:
    train = write(tmp_path / "train.csv", "2\n1,2\n1,0\n1\n3\n1\n2\n2,2\n0,1\n")
    test = write(tmp_path / "test.csv", "2\n4,1\n0,1\n")
    splits = load_dataset(DatasetSpec("kt3", train, test, valid_fraction=0.34, seed=1))
    assert splits.vocab.tasks == ["1", "2", "3", "4"]  # union over train and test
    assert len(splits.train.histories) == 2 and len(splits.valid.histories) == 1
    assert ids(splits.test) == [(["4", "1"], [0.0, 1.0])]  # type: ignore[arg-type]
    assert all(d.tasks == splits.vocab.tasks for d in (splits.train, splits.valid, splits.test))

    with_valid = load_dataset(DatasetSpec("kt3", train, valid_path=test))
    assert len(with_valid.train.histories) == 3 and with_valid.test is None
    assert ids(with_valid.valid) == [(["4", "1"], [0.0, 1.0])]

    pykt = load_dataset(DatasetSpec("pykt", write(tmp_path / "p.csv", PYKT), valid_fold=1))
    assert pykt.valid.learners == ["u2"] and pykt.train.learners == ["u1", "u3"]

    jsonl = write(tmp_path / "h.jsonl", '{"learner_id": "a", "tasks": ["x"], "outcomes": [1]}\n' * 2)
    same_learner = load_dataset(DatasetSpec("jsonl", jsonl, valid_fraction=0.0))
    assert len(same_learner.train.histories) == 2 and same_learner.valid.histories == []

    sim = SimConfig(n_skills=2, tasks_per_skill=2, n_learners=50, min_events=3, max_events=6)
    simulated = load_dataset(DatasetSpec("simulated", valid_fraction=0.2, simulation=sim))
    sizes = [len(d.histories) for d in (simulated.train, simulated.valid, simulated.test)]  # type: ignore[union-attr]
    assert sizes == [32, 8, 10] and len(simulated.vocab) == 4

    with pytest.raises(ValueError, match="train_path"):
        DatasetSpec("kt3")
    with pytest.raises(ValueError, match="not both"):
        DatasetSpec("pykt", train, valid_path=test, valid_fold=0)


# --- the real shared files ----------------------------------------------------------------------------------
def test_reads_the_head_of_the_dkt_assist2009_file(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "assist2009_dkt" / "builder_train.csv"
    data = read_kt3(head(src, tmp_path / "head.csv", 30))  # 10 learners, trailing commas, 0-based ids
    lines = src.read_text().splitlines()[:30]
    assert len(data.histories) == 10
    for k, (tasks, outcomes) in enumerate(ids(data)):
        assert len(tasks) == int(lines[3 * k]) and lines[3 * k + 1] == ",".join(tasks) + ","
        assert lines[3 * k + 2] == ",".join(str(int(o)) for o in outcomes) + ","
    assert ids(data)[:2] == [(["7"], [1.0]), (["82"] * 7, [0.0] * 7)]


@pytest.mark.parametrize("name", ["assist2009_updated", "assist2015", "STATICS"])
def test_reads_the_head_of_the_dkvmn_files(shared_data: Path, tmp_path: Path, name: str) -> None:
    src = shared_data / "dkvmn" / name / f"{name}_valid1.csv"
    data = read_kt3(head(src, tmp_path / "head.csv", 60))
    lines = src.read_text().splitlines()[:60]
    assert [len(t) for t, _ in data.histories] == [int(n) for n in lines[::3]]
    assert [",".join(t) for t, _ in ids(data)] == lines[1::3]  # ids kept as the file writes them (1-based)
    assert all(set(o) <= {0.0, 1.0} for _, o in data.histories) and "0" not in data.tasks


def test_reads_a_whole_dkvmn_file_with_the_documented_counts(shared_data: Path) -> None:
    data = read_kt3(shared_data / "dkvmn" / "STATICS" / "STATICS_valid1.csv")
    assert len(data.histories) == 36 and data.n_events == 21_537  # shared/data/README.md


def test_reads_the_head_of_the_pykt_files(shared_data: Path, tmp_path: Path) -> None:
    for name, folds in (("train_valid.csv", {0}), ("test.csv", {-1})):
        data = read_pykt(head(shared_data / "pykt_assist2015" / name, tmp_path / name, 21))
        assert len(data.histories) == 20 and set(data.folds or []) == folds
        assert len(set(data.learners or [])) == 20
        assert all(0 <= int(t) < 100 for t in data.tasks)  # pyKT remaps concepts to 0..99
    train = read_pykt(head(shared_data / "pykt_assist2015" / "train_valid.csv", tmp_path / "tv.csv", 2))
    assert train.learners == ["16894"] and ids(train)[0][0] == ["19"] * 21
