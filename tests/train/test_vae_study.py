"""The demo VAE study runs end to end at a tiny size, resumes, and exports a VAE a later run continues."""
import json

import torch

from collab.train.vae_study import VARIANTS, load_vae_file, main, save_vae_file
from collab.vae import AutoencoderKL


def test_study_scores_resumes_and_exports(tmp_path):
    run, out = tmp_path / "study", tmp_path / "vae.safetensors"
    args = ["--run", str(run), "--num-images", "20", "--n", "4", "--only", "f4c3_nonorm_whole_rgb", "--shipped", "",
            "--threads", "1"]
    main(args + ["--steps", "2", "--export", str(out)])
    results = json.loads((run / "study.json").read_text())
    row = results["f4c3_nonorm_whole_rgb@2"]
    assert 0.0 <= row["miou"] <= 1.0 and row["mae"] > 0 and "renders" in results
    assert (run / "study.md").read_text().count("f4c3_nonorm_whole_rgb") == 1
    main(args + ["--steps", "3"])  # continues from step 2, not from scratch
    assert "f4c3_nonorm_whole_rgb@3" in json.loads((run / "study.json").read_text())
    vae = AutoencoderKL(next(v for v in VARIANTS if v.name == "f4c3_nonorm_whole_rgb").vae)
    assert load_vae_file(vae, out)[0] == 2


def test_exported_vae_refuses_another_config(tmp_path):
    a = AutoencoderKL(VARIANTS[0].vae)
    save_vae_file(a, tmp_path / "v.safetensors", 5, 1.0)
    b = AutoencoderKL(next(v for v in VARIANTS if v.name == "f4c3_nonorm_whole_rgb").vae)
    try:
        load_vae_file(b, tmp_path / "v.safetensors")
    except ValueError as e:
        assert "another config" in str(e)
    else:
        raise AssertionError("a VAE of another config was loaded")
    assert load_vae_file(AutoencoderKL(VARIANTS[0].vae), tmp_path / "v.safetensors") == (5, 1.0)
