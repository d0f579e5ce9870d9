"""The predictions file: schema, provenance in the footer, published whole or not at all; the stage's outcomes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.core.contracts import assets
from modelyard.deploy.batch import output
from modelyard.deploy.batch.errors import BatchInputError, BatchScoringError, MissingInputError
from modelyard.deploy.batch.model import trust_from_env
from modelyard.deploy.batch.scoring import ScoreRequest, ScoreResult
from modelyard.deploy.batch.stage import check_input, check_selection, score_outcome

PROVENANCE = output.Provenance(
    family="f", region="r", model_name="f-r", version="3", spec_digest="s1", input_digest="d1", key="booking_id"
)


def staged(out: Path, rows: int) -> output.StagedFile:
    file = output.StagedFile(out, output.schema("booking_id", output.key_type("string")))
    keys = [f"b{i}" for i in range(rows)]
    file.append(output.chunk_table(file.writer.schema, keys, np.linspace(0, 1, rows, dtype=np.float32), "3", "s1"))
    return file


def test_a_published_file_holds_the_rows_and_its_provenance(tmp_path: Path) -> None:
    out = tmp_path / "deep" / "predictions.parquet"
    file = staged(out, 4)
    assert not out.exists(), "nothing is visible before publish"

    file.publish(output.Provenance(**{**PROVENANCE.__dict__, "rows": 4}))

    table = pq.read_table(out)
    assert table.column_names == ["booking_id", "prediction", "model_version", "spec_digest"]
    assert table.schema.field("prediction").type == pa.float64()
    assert table.column("model_version").to_pylist() == [3] * 4
    found = output.read_provenance(out)
    assert found is not None
    assert found.rows == 4
    assert found.work() == PROVENANCE.work()
    assert list(out.parent.iterdir()) == [out], "the staged file was renamed into place"


def test_a_discarded_file_leaves_nothing_and_the_old_file_stays(tmp_path: Path) -> None:
    out = tmp_path / "predictions.parquet"
    staged(out, 2).publish(PROVENANCE)
    before = out.read_bytes()
    staged(out, 5).discard()
    assert out.read_bytes() == before
    assert list(tmp_path.iterdir()) == [out]


def test_a_file_that_is_not_ours_has_no_provenance(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "other.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    assert output.read_provenance(tmp_path / "other.parquet") is None
    assert output.read_provenance(tmp_path / "text.parquet") is None
    assert output.read_provenance(tmp_path / "missing.parquet") is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("out", "is a folder; name the Parquet file to write in it, e.g. {tmp}/out/predictions.parquet"),
        ("out/p.csv", "{tmp}/out/p.csv: predictions are written as Parquet, so name the file .parquet"),
        ("out/p", "(e.g. {tmp}/out/p.parquet)"),
    ],
)
def test_an_output_that_cannot_take_a_parquet_file_is_refused(tmp_path: Path, name: str, expected: str) -> None:
    (tmp_path / "out").mkdir()
    with pytest.raises(BatchScoringError) as caught:
        output.check_destination(tmp_path / name)
    assert expected.format(tmp=tmp_path) in str(caught.value)
    output.check_destination(tmp_path / "out" / "p.parquet")
    output.check_destination(tmp_path / "new" / "p.pq")


def test_other_work_is_told_apart(tmp_path: Path) -> None:
    assert PROVENANCE.work() == output.Provenance(**{**PROVENANCE.__dict__, "rows": 9}).work()
    assert PROVENANCE.work() != output.Provenance(**{**PROVENANCE.__dict__, "version": "4"}).work()
    assert PROVENANCE.work() != output.Provenance(**{**PROVENANCE.__dict__, "input_digest": "d2"}).work()


def test_a_scored_pair_announces_its_predictions_and_an_unchanged_one_does_not() -> None:
    provenance = output.Provenance(**{**PROVENANCE.__dict__, "rows": 10})
    scored = score_outcome(ScoreResult("f", "r", "scored", "/p.parquet", provenance, chunks=2, seconds=0.5))
    assert scored.event_uri == assets.predictions_uri("f", "r") == "modelyard://predictions/f/r"
    assert scored.event_extra == {
        "family": "f", "region": "r", "model_name": "f-r", "version": "3", "spec_digest": "s1",
        "input_digest": "d1", "rows": 10, "path": "/p.parquet",
    }  # fmt: skip
    assert "10 rows (2 chunks) scored by f-r v3" in scored.detail
    unchanged = score_outcome(ScoreResult("f", "r", "unchanged", "/p.parquet", provenance))
    assert unchanged.event_uri is None
    assert "nothing to do" in unchanged.detail


def test_a_form_that_cannot_be_scored_is_refused_before_anything_runs() -> None:
    with pytest.raises(BatchScoringError, match="select one family and one region"):
        check_selection([("f", "a"), ("f", "b")], 3, "in.csv", manual=True)
    with pytest.raises(BatchScoringError, match="no input to score"):
        check_selection([("f", "a")], None, None, manual=True)
    check_selection([("f", "a")], 3, "in.csv", manual=True)
    check_selection([("f", "a"), ("f", "b")], None, None, manual=False)  # a champion event: skipped later


def test_a_local_input_that_names_no_file_is_refused_before_any_model_is_loaded(tmp_path: Path) -> None:
    missing = tmp_path / "bookings.csv"
    with pytest.raises(MissingInputError, match=rf"input {missing}: no such file"):
        check_input([("f", "a"), ("f", "b")], str(missing))
    with pytest.raises(MissingInputError, match="the glob matches no file"):
        check_input([("f", "a")], f"file://{tmp_path}/*.parquet")
    per_pair = f"{tmp_path}/{{family}}-{{region}}.csv"
    with pytest.raises(MissingInputError, match=r"no file for any of the 2 selected pairs \(first: input .*/f-a.csv"):
        check_input([("f", "a"), ("f", "b")], per_pair)
    (tmp_path / "f-b.csv").write_text("booking_id\nb1\n")
    check_input([("f", "a"), ("f", "b")], per_pair)  # f/b has its file: scored; f/a fails on its own when scored
    (tmp_path / "f-a.txt").write_text("booking_id\nb1\n")
    with pytest.raises(BatchInputError, match=r"f-a.txt: '.txt' is not .csv or .parquet"):
        check_input([("f", "a")], f"{tmp_path}/f-a.txt")
    check_input([("f", "a")], "s3://bucket/none-such.csv")  # an object store is checked per pair when scored


def test_a_request_takes_an_alias_or_a_version() -> None:
    with pytest.raises(BatchScoringError, match="an alias or a version, not both"):
        ScoreRequest(input="in.csv", alias="champion", version=2)
    with pytest.raises(BatchScoringError, match="chunk_rows must be at least 1"):
        ScoreRequest(input="in.csv", chunk_rows=0)


def test_the_trust_rules_are_the_servers() -> None:
    assert trust_from_env({}).allowed_function_modules == frozenset()
    assert not trust_from_env({}).allow_pickle
    trust = trust_from_env(
        {"MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES": "acme.features, acme.more", "MODELYARD_SERVE_ALLOW_PICKLE": "1"}
    )
    assert trust.allowed_function_modules == {"acme.features", "acme.more"}
    assert trust.allow_pickle


def test_a_file_is_published_to_an_object_store_in_one_upload() -> None:
    from upath import UPath

    out = UPath("memory://batch-outputs/f/r/predictions.parquet")
    staged(out, 3).publish(PROVENANCE)
    found = output.read_provenance(out)
    assert found is not None
    assert found.work() == PROVENANCE.work()
    with out.open("rb") as handle:
        assert pq.read_table(handle).num_rows == 3
