import json
import os
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from collab.checkpoint import save_pretrained
from collab.cli import main
from collab.masks import save_mask_png
from tests.conftest import VOCAB, tiny_model


@pytest.fixture()
def model_dir(tmp_path):
    model = tiny_model()
    model.config = replace(model.config, vocab=str(VOCAB))
    return save_pretrained(model, tmp_path / "tiny")


@pytest.fixture()
def mask_png(tmp_path):
    labels = np.zeros((32, 32), np.uint8)
    labels[6:26, 8:24] = 1
    labels[0:6] = 13
    return save_mask_png(labels, tmp_path / "mask.png")


def test_generate_writes_images_influence_and_settings(tmp_path, model_dir, mask_png):
    out = tmp_path / "out"
    code = main(["generate", "--model", str(model_dir), "--text", "This man has a short beard.", "--mask",
                 str(mask_png), "--steps", "3", "--batch-size", "2", "--out", str(out), "--save-influence",
                 "--save-intermediates", "--no-progress", "--rule", "official"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert "000000_00.png" in names and "000000_01.png" in names
    assert "000000_00_influence.png" in names and "000000_00_pred_x0.png" in names
    settings = json.loads((out / "000000_settings.json").read_text())
    assert settings["rule"] == "official" and settings["modalities"] == ["mask", "text"]
    with Image.open(out / "000000_00.png") as im:
        assert im.size == (16, 16)
    assert not [p for p in out.iterdir() if p.suffix == ".tmp"]


def test_single_modality_commands(tmp_path, model_dir, mask_png):
    assert main(["text2image", "--model", str(model_dir), "--text", "a woman", "--steps", "2",
                 "--out", str(tmp_path / "t"), "--no-progress"]) == 0
    assert main(["mask2image", "--model", str(model_dir), "--mask", str(mask_png), "--steps", "2",
                 "--out", str(tmp_path / "m"), "--no-progress", "--sampler", "dpmpp_2m"]) == 0
    assert json.loads((tmp_path / "m" / "000000_settings.json").read_text())["modalities"] == ["mask"]


def test_bad_inputs_fail_before_anything_is_written(tmp_path, model_dir, capsys):
    out = tmp_path / "never"
    assert main(["text2image", "--model", str(model_dir), "--text", "  ", "--out", str(out)]) == 2
    assert "--text is empty" in capsys.readouterr().err
    assert main(["mask2image", "--model", str(model_dir), "--mask", str(tmp_path / "nope.png"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    odd = np.zeros((16, 16, 3), np.uint8)
    odd[:, :8] = (12, 240, 7)  # not a palette colour
    Image.fromarray(odd).save(tmp_path / "odd.png")
    assert main(["mask2image", "--model", str(model_dir), "--mask", str(tmp_path / "odd.png"), "--out", str(out)]) == 2
    assert "(12, 240, 7)" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "missing_dir"), "--text", "a man", "--out", str(out)]) == 2
    assert not out.exists()


def test_edit_command_writes_edit_strip_and_session(tmp_path, model_dir, mask_png):
    image = (np.random.default_rng(1).random((24, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "face.png")
    out = tmp_path / "edits"
    args = ["edit", "--model", str(model_dir), "--image", str(tmp_path / "face.png"), "--text", "an old man",
            "--mask", str(mask_png), "--steps", "2", "--alphas", "0", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    names = {p.name for p in out.iterdir()}
    assert {"face_edit_alpha1.png", "face_alpha_strip.png", "face_influence.png", "face_edit_session.safetensors"} <= names
    again = tmp_path / "again"
    assert main(["edit", "--model", str(model_dir), "--image", str(tmp_path / "face.png"), "--session",
                 str(out / "face_edit_session.safetensors"), "--steps", "2", "--alpha", "2", "--out", str(again),
                 "--no-progress"]) == 0
    assert (again / "face_edit_alpha2.png").exists()


def test_edit_bad_inputs(tmp_path, model_dir, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "face.png")
    assert main(["edit", "--model", str(model_dir), "--image", str(tmp_path / "face.png")]) == 2
    assert "give a target" in capsys.readouterr().err
    assert main(["edit", "--model", str(model_dir), "--image", str(tmp_path / "face.png"), "--text", "a",
                 "--alpha", "7"]) == 2
    assert "--alpha / --alphas must be in [0.0, 3.0], got 7.0" in capsys.readouterr().err
    assert main(["edit", "--model", str(model_dir), "--image", str(tmp_path / "nope.png"), "--text", "a"]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["edit", "--model", str(model_dir), "--image", str(tmp_path / "bad.png"), "--text", "a",
                 "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_strength_and_window_reach_the_run_and_its_settings(tmp_path, model_dir, mask_png):
    out = tmp_path / "steered"
    paint = np.ones((16, 16), np.float32)
    paint[:8] = 3.0
    np.save(tmp_path / "paint.npy", paint)
    code = main(["generate", "--model", str(model_dir), "--text", "This man has a short beard.", "--mask",
                 str(mask_png), "--steps", "4", "--out", str(out), "--no-progress",
                 "--strength", "text=1.5", "--window", "mask=0:0.6", "--strength", f"mask={tmp_path / 'paint.npy'}"])
    assert code == 0
    settings = json.loads((out / "000000_settings.json").read_text())
    assert settings["strength"]["text"] == 1.5 and settings["strength"]["mask"].startswith("map 8x8")
    assert settings["window"] == {"mask": [0.0, 0.6], "text": [0.0, 1.0]}


@pytest.mark.parametrize("flags, message", [
    (["--strength", "text"], "NAME=VALUE"),
    (["--strength", "text=loud"], "not a number"),
    (["--strength", "text=-1"], "finite and >= 0"),
    (["--strength", "sketch=2"], "'sketch' is not a condition of this run"),
    (["--window", "mask=0.6"], "START:END"),
    (["--window", "mask=0.8:0.2"], "0 <= start <= end <= 1"),
    (["--strength", "mask=nowhere.npy"], "strength map not found"),
])
def test_bad_strengths_and_windows_fail_before_loading(tmp_path, mask_png, flags, message, capsys):
    code = main(["generate", "--model", str(tmp_path / "no_such_model"), "--text", "a man", "--mask", str(mask_png),
                 "--out", str(tmp_path / "never"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_windows_that_leave_a_step_empty_are_a_clear_error(tmp_path, model_dir, mask_png, capsys):
    code = main(["generate", "--model", str(model_dir), "--text", "a man", "--mask", str(mask_png), "--steps", "3",
                 "--window", "mask=0:0.2", "text=0.8:1", "--out", str(tmp_path / "never"), "--no-progress"])
    assert code == 2 and "no modality takes part in step 2 of 3" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("flags, message", [
    (["--eta", "nan"], "--eta must be a finite number"),
    (["--eta", "1.5"], "--eta must be in [0.0, 1.0]"),
    (["--seed", "-1"], "--seed must be in [0, 9223372036854775807]"),
    (["--steps", "0"], "--steps must be in [1, 1000]"),
    (["--batch-size", "1000"], "--batch-size must be in [1, 64]"),
    (["--device", "tpu:9"], "--device must be cpu"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, model_dir, capsys, flags, message):
    out = tmp_path / "never"
    assert main(["text2image", "--model", str(model_dir), "--text", "a man", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_argparse_errors_exit_2(model_dir):
    with pytest.raises(SystemExit) as e:
        main(["text2image", "--model", str(model_dir), "--text", "a", "--seed", "1.5"])
    assert e.value.code == 2


def test_out_on_an_existing_file_is_a_usage_error(tmp_path, model_dir, capsys):
    target = tmp_path / "taken.png"
    target.write_bytes(b"keep me")
    for out in (target, target / "sub"):
        assert main(["text2image", "--model", str(model_dir), "--text", "a man", "--out", str(out)]) == 2
        assert "is an existing file" in capsys.readouterr().err
    assert target.read_bytes() == b"keep me"


def test_a_directory_where_an_output_goes_is_refused_up_front(tmp_path, model_dir, capsys):
    out = tmp_path / "out"
    (out / "000000_00.png").mkdir(parents=True)
    assert main(["text2image", "--model", str(model_dir), "--text", "a man", "--out", str(out), "--steps", "2"]) == 2
    assert "not a file" in capsys.readouterr().err


def test_fifo_mask_is_refused_without_blocking(tmp_path, model_dir, capsys):
    fifo = tmp_path / "mask.png"
    os.mkfifo(fifo)
    assert main(["mask2image", "--model", str(model_dir), "--mask", str(fifo), "--out", str(tmp_path / "o")]) == 2
    assert "FIFO" in capsys.readouterr().err


def test_a_failed_write_leaves_nothing_behind(tmp_path, model_dir, monkeypatch, capsys):
    out = tmp_path / "new" / "out"
    calls = []
    real_save = Image.Image.save

    def flaky_save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", flaky_save)
    code = main(["text2image", "--model", str(model_dir), "--text", "a man", "--steps", "2", "--batch-size", "2",
                 "--out", str(out), "--no-progress"])
    assert code == 1 and "No space left" in capsys.readouterr().err
    assert len(calls) == 2 and not (tmp_path / "new").exists()  # no .tmp, no half folder


def test_runtime_failure_exits_1_naming_the_bad_weight(tmp_path, model_dir, capsys):
    from safetensors.torch import load_file, save_file

    file = sorted(model_dir.rglob("*.safetensors"))[0]  # either layout: a component's file or the flat one
    weights = load_file(file)
    key = sorted(k for k, v in weights.items() if v.is_floating_point())[3]
    weights[key] = weights[key].clone()
    weights[key].view(-1)[0] = float("nan")
    save_file(weights, file)
    assert main(["text2image", "--model", str(model_dir), "--text", "a man", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert key in err and "NaN" in err and "Traceback" not in err


@pytest.fixture()
def attributes_model_dir(tmp_path):
    from tests.conftest import tiny_config

    model = tiny_model(tiny_config({"mask": "mask", "attributes": "attributes"}))
    return save_pretrained(model, tmp_path / "tiny_attributes")


def test_cond_gives_any_modality_and_the_flags_are_its_shorthand(tmp_path, attributes_model_dir, mask_png):
    common = ["generate", "--model", str(attributes_model_dir), "--mask", str(mask_png), "--steps", "2", "--no-progress"]
    assert main([*common, "--cond", "attributes=male,beard", "--out", str(tmp_path / "a")]) == 0
    settings = json.loads((tmp_path / "a" / "000000_settings.json").read_text())
    assert settings["modalities"] == ["mask", "attributes"]
    assert settings["conditions"] == {"mask": str(mask_png), "attributes": "male,beard"}
    assert main([*common, "--attributes", '{"male": true, "beard": 1}', "--out", str(tmp_path / "b")]) == 0
    assert main([*common, "--attributes", "none", "--out", str(tmp_path / "c")]) == 0

    def image(folder):
        return np.asarray(Image.open(tmp_path / folder / "000000_00.png"))

    assert np.array_equal(image("a"), image("b")) and not np.array_equal(image("a"), image("c"))


@pytest.mark.parametrize("flags, message", [
    (["--cond", "attributes"], "--cond takes NAME=VALUE, got 'attributes'"),
    (["--cond", "attributes=wings"], "unknown attribute 'wings'"),
    (["--attributes", "{male"], "--attributes: '{male' is not a JSON object"),
    (["--cond", "colour=red"], "--cond colour: this model has no colour modality (it has mask, attributes)"),
    (["--text", "a man"], "give a condition this model reads (mask or attributes): --mask, or --attributes; "
                          "you gave text only"),
    (["--text", "a man", "--attributes", "male"], "this model has no text modality (it has mask, attributes)"),
    (["--attributes", "male", "--cond", "attributes=beard"], "the attributes condition is given twice"),
    (["--cond", "mask=nowhere.png"], "not found"),
])
def test_bad_conditions_exit_2_with_one_line(tmp_path, attributes_model_dir, flags, message, capsys):
    out = tmp_path / "never"
    assert main(["generate", "--model", str(attributes_model_dir), "--out", str(out), "--steps", "2", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_strength_map_that_is_not_2d_numbers_is_refused_from_its_header(tmp_path, mask_png, capsys):
    np.save(tmp_path / "rgb.npy", np.ones((4, 4, 3), np.float32))
    code = main(["generate", "--model", str(tmp_path / "no_such_model"), "--text", "a man", "--mask", str(mask_png),
                 "--out", str(tmp_path / "never"), "--strength", f"text={tmp_path / 'rgb.npy'}"])
    err = capsys.readouterr().err
    assert code == 2 and "a strength map is a 2-D array of numbers" in err and "(4, 4, 3)" in err
