"""The app's jobs: validated widget values -> `collab` package calls -> what each tab shows.

Every job is a generator of one view dataclass per tab (fields left at KEEP are not changed on the
page), so tests call them directly and the tabs map fields to widgets without looking at types.
Each job has a `*_request` function that only validates (the page runs it first, so a user mistake
becomes a message and never an error mark on the outputs), then the job runs in a worker thread,
holding its model's turn, and stops at the next step when `stop` is set.
"""
from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from collab import kinds
from collab.data.faceworld import AGES, BEARDS
from collab.eval import Method, default_methods, joint_method
from collab.influence import region_influence, plot_region_influence
from collab.pipeline import CollabStep, GenerationSettings, generate, to_uint8
from collab.visualize import StepRecorder

from collab_app import controls as C
from collab_app import pictures
from collab_app.errors import UserError
from collab_app.inputs import conditions_from, read_attributes, read_mask, read_text
from collab_app.limits import BATCH, ETA, STEPS, read_seed
from collab_app.state import AppState
from collab_app.streaming import raise_if_stopped, run_in_thread

Progress = Callable[..., Any]
JOINT_MODEL = "joint"  # the registry's jointly trained baseline, shown in Compare when installed
RULE_NOTES = {"paper": "the learned per-pixel softmax, as in the paper",
              "official": "softmax, then the official sampler's cosine decay and doubling of the mask weight"}


class Keep:
    """A view field the page leaves as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


def _no_progress(*args, **kwargs) -> None:
    return None


@dataclass
class Request:
    """A validated job: the model, its raw conditions and the numbers, corrected to the bounds."""

    model_name: str
    conds: dict
    text: str | None
    mask: np.ndarray | None
    attributes: list[str] | None
    seed: int
    steps: int
    batch: int = 1
    eta: float = 1.0
    sampler: str = "ddim"
    rule: str = ""

    def record(self, settings: GenerationSettings | None = None, **extra) -> str:
        """The settings of a result as JSON: enough to reproduce it."""
        mask = None if self.mask is None else f"{self.mask.shape[1]}x{self.mask.shape[0]} label map"
        out = {"model": self.model_name, "text": self.text, "mask": mask, "attributes": self.attributes}
        if settings is not None:
            out |= {k: v for k, v in asdict(settings).items() if k != "timesteps"}
        else:
            out |= {"seed": self.seed, "steps": self.steps, "rule": self.rule or "model default"}
        return json.dumps(out | extra, indent=2)


def model_config(state: AppState, name: str):
    """A model's config without loading its weights when its folder has one."""
    return state.config(name) or state.model(name).config


def mixed_request(state: AppState, model_name: str, text: Any, mask_value: Any, attributes: Any, seed: Any,
                  steps: Any, randomize: bool = False, **numbers) -> Request:
    """Read and check one job's widgets (no model weights are needed when the model's folder has a config)."""
    text, mask, attrs = read_text(text), read_mask(mask_value), read_attributes(attributes)
    name = state.resolve(model_name)
    conds = conditions_from(model_config(state, name), text, mask, attrs)
    return Request(name, conds, text, mask, attrs, read_seed(seed, randomize), STEPS.correct(steps), **numbers)


def generate_request(state: AppState, model_name: str, text: Any, mask_value: Any, seed: Any, steps: Any,
                     eta: Any, sampler: str, batch: Any, rule: str, randomize: bool = False,
                     attributes: Any = None) -> Request:
    return mixed_request(state, model_name, text, mask_value, attributes, seed, steps, randomize,
                         batch=BATCH.correct(batch), eta=ETA.correct(eta), sampler=sampler, rule=rule or "")


def collaborative_request(state: AppState, model_name: str, text: Any, mask_value: Any, seed: Any, steps: Any,
                          rule: str, what: str, randomize: bool = False, attributes: Any = None) -> Request:
    """A request for the views that mix modalities (Influence, Compare): two or more, learned weights."""
    req = mixed_request(state, model_name, text, mask_value, attributes, seed, steps, randomize, rule=rule or "")
    cfg = model_config(state, req.model_name)
    if not any(m.diffuser for m in cfg.modalities):
        raise UserError(f"model {req.model_name} is one network with no dynamic diffusers; {what} needs a "
                        "collaborative model (e.g. demo)")
    if len(req.conds) < 2:
        raise UserError(f"{what} needs at least two modalities: give two or more of {', '.join(cfg.names)} "
                        f"(got {', '.join(req.conds)} only)")
    return req


def mode_name(model, settings: GenerationSettings) -> str:
    """How the page names what ran: a joint model's own mode, one collaborator alone, or the mode."""
    joint = [m for m in model.config.modalities if kinds.kind_of(m.encoder).parts(m.encoder)
             and m.name in settings.modalities]
    if joint:
        return f"joint ({' + '.join(name for name, _, _ in joint[0].inputs())} in one network)"
    if len(settings.modalities) == 1:
        return f"{settings.modalities[0]} alone"
    return f"{settings.mode}, rule {settings.rule}" if settings.mode == "collaborative" else settings.mode


def describe(model, settings: GenerationSettings) -> str:
    return (f"{' + '.join(settings.modalities)} | {mode_name(model, settings)} | {settings.sampler} "
            f"{settings.steps} steps eta={settings.eta:g} | seed {settings.seed}{settings.describe_handles()}")


def waiting(report: Callable, progress: Progress, view: type) -> Callable[[int], None]:
    """What a job says while it waits for its model: the number of jobs ahead, in the status and on
    the progress bar (the page's own queue label would only say "processing")."""
    def say(ahead: int) -> None:
        progress((0, 1), desc=f"waiting for the model: {ahead} job(s) ahead")
        report(view(f"waiting: {ahead} job(s) ahead"))
    return say


def waiting_note(state: AppState, name: str) -> str | None:
    """What a new job on `name` will wait for, said before it starts."""
    if state.load_state(name) != "loaded":
        return f"loading model `{name}` (first use; the page stays usable)"
    ahead = state.lines.ahead(name)
    return f"waiting for model `{name}`: {ahead} job(s) ahead" if ahead else None


# ---------------------------------------------------------------- Generate


@dataclass
class GenerateView:
    status: str
    images: Any = KEEP
    overlay: Any = KEEP
    seed: Any = KEEP
    steps: Any = KEEP
    settings: Any = KEEP


def generate_stream(state: AppState, req: Request, preview_every: int | None = None,
                    progress: Progress | None = None, stop: threading.Event | None = None,
                    controls: C.Controls | None = None):
    """GenerateViews while sampling (previews of the predicted x0 every few steps), then the result
    (the same pixels as `collab.pipeline.generate` with that seed and the `controls`' strength and
    window), or what was there when stopped."""
    progress = progress or _no_progress
    yield GenerateView(waiting_note(state, req.model_name) or "starting", seed=req.seed, steps=req.steps)
    model = state.model(req.model_name)
    handles = controls.handles(model, req.conds) if controls else {}
    every = preview_every or max(1, req.steps // 8)

    def work(report, cancelled):
        def on_step(step: CollabStep) -> None:
            raise_if_stopped(cancelled)
            progress((step.index + 1, step.num_steps), desc="sampling")
            if step.index % every == 0 and step.index < step.num_steps - 1:
                images = list(to_uint8(model.decode(step.pred_x0)))
                report(GenerateView(f"step {step.index + 1}/{step.num_steps}: predicted x0 (preview)", images))

        with state.turn(req.model_name, cancelled, waiting(report, progress, GenerateView)):
            return generate(model, req.conds, steps=req.steps, eta=req.eta, sampler=req.sampler, seed=req.seed,
                            batch_size=req.batch, rule=req.rule or None, callback=on_step, **handles)

    for kind, payload in run_in_thread(work, stop):
        if kind == "update":
            yield payload
        elif kind == "stopped":
            yield GenerateView("stopped (the images shown are the last previews)")
        else:
            images = list(payload.images)
            over = pictures.mask_overlay(images[0], req.mask) if req.mask is not None else None
            yield GenerateView(f"done: {describe(model, payload.settings)}", images, over, req.seed, req.steps,
                               req.record(payload.settings, mode=mode_name(model, payload.settings)))


# ---------------------------------------------------------------- Influence functions


@dataclass
class InfluenceRun:
    frames: list[str]  # per step: the frame (maps | x_t | predicted x0 over a colour bar) as a PNG
    timesteps: list[int]
    rule: str
    gif: str
    summary: str


@dataclass
class InfluenceView:
    status: str
    run: Any = KEEP
    frame: Any = KEEP
    slider: Any = KEEP  # the number of recorded steps (the slider's maximum)
    image: Any = KEEP
    gif: Any = KEEP
    plot: Any = KEEP
    seed: Any = KEEP
    steps: Any = KEEP
    settings: Any = KEEP


def _decode(model, latents: list[torch.Tensor], chunk: int = 16) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([to_uint8(model.decode(torch.stack(latents[i:i + chunk]).to(model.device)))
                               for i in range(0, len(latents), chunk)])


def _maps(rec: StepRecorder, k: int) -> dict[str, np.ndarray]:
    return {n: rec.influence_array(n)[k] for n in rec.influence}


def _write_frames(rec: StepRecorder, xts: np.ndarray, x0s: np.ndarray, under: Path) -> tuple[list[str], str]:
    """Every step's frame as a PNG, and the GIF of them all, in a new folder under `under`."""
    folder = Path(tempfile.mkdtemp(prefix="influence_", dir=under))  # cleaned with the app's files
    frames = [Image.fromarray(pictures.influence_frame(_maps(rec, k), xts[k], x0s[k], rec.timesteps[k]))
              for k in range(len(rec.timesteps))]
    files = [str(folder / f"step_{k + 1:03d}.png") for k in range(len(frames))]
    for im, name in zip(frames, files):
        im.save(name)
    gif = folder / "influence.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:] + [frames[-1]] * 5, duration=120, loop=0)
    return files, str(gif)


def region_plot(rec: StepRecorder, labels: np.ndarray | None, rule: str, mode: str):
    """Each modality's mean weight per face region over sampling (over the whole image without a mask)."""
    curves = {}
    for name in rec.influence:
        maps = rec.influence_array(name)
        curves[name] = (region_influence(maps, labels, rec.timesteps) if labels is not None else
                        region_influence(maps, np.zeros(maps.shape[-2:], np.uint8), rec.timesteps,
                                         regions={"whole image": [0]}, with_boundary=False))
    where = "per face region" if labels is not None else "over the whole image (no mask given)"
    return plot_region_influence(curves, f"influence {where}: rule {rule}, mode {mode}")


def influence_stream(state: AppState, req: Request, mode: str = "collaborative", preview_every: int | None = None,
                     progress: Progress | None = None, stop: threading.Event | None = None,
                     controls: C.Controls | None = None):
    """One generation with every step recorded: InfluenceViews with preview frames while sampling,
    then the run (a frame per step, a GIF), the result and the region plot."""
    progress = progress or _no_progress
    yield InfluenceView(waiting_note(state, req.model_name) or "starting", seed=req.seed, steps=req.steps)
    model = state.model(req.model_name)
    handles = controls.handles(model, req.conds) if controls else {}
    every = preview_every or max(1, req.steps // 10)

    def work(report, cancelled):
        rec = StepRecorder(keep_latents=True)

        def on_step(step: CollabStep) -> None:
            raise_if_stopped(cancelled)
            rec(step)
            progress((step.index + 1, step.num_steps), desc="sampling, recording every step")
            if step.index % every == 0 and step.index < step.num_steps - 1:
                x0 = to_uint8(model.decode(step.pred_x0[:1]))[0]
                frame = pictures.influence_frame(_maps(rec, step.index), None, x0, step.t)
                report(InfluenceView(f"recording: step {step.index + 1}/{step.num_steps}", frame=frame))

        with state.turn(req.model_name, cancelled, waiting(report, progress, InfluenceView)):
            res = generate(model, req.conds, steps=req.steps, eta=1.0, seed=req.seed, rule=req.rule or None,
                           mode=mode, callback=on_step, **handles)
            report(InfluenceView("decoding x_t and the predicted x0 of every step"))
            progress(None)
            xts, x0s = _decode(model, rec.x_t), _decode(model, rec.pred_x0)
        report(InfluenceView("writing the frames, the GIF and the region plot"))
        files, gif = _write_frames(rec, xts, x0s, state.files_dir())
        used = res.settings.rule
        summary = f"{len(files)} steps, rule **{used}** ({RULE_NOTES.get(used, used)}), mode {mode}, seed {req.seed}"
        summary += f"; handles: {C.describe(res.settings)}"
        run = InfluenceRun(files, list(rec.timesteps), used, gif, summary)
        plot = region_plot(rec, req.mask, used, mode)
        return InfluenceView(influence_caption(run, 1)[1], run, files[0], len(files),
                             pictures.for_display(res.images[0]), gif, plot, req.seed, req.steps,
                             req.record(res.settings))

    for kind, payload in run_in_thread(work, stop):
        yield InfluenceView("stopped: nothing was kept (record again to see every step)") if kind == "stopped" \
            else payload


def influence_caption(run: InfluenceRun | None, step: Any) -> tuple[str | None, str]:
    """The frame of sampling step `step` (1-based, as on the slider) as a PNG file, and its caption."""
    if run is None:
        return None, "record a generation first"
    k = int(np.clip(int(step) - 1, 0, len(run.frames) - 1))
    return run.frames[k], f"{run.summary}: step {k + 1}/{len(run.frames)}, t = {run.timesteps[k]}"


# ---------------------------------------------------------------- Compare


@dataclass
class CompareView:
    status: str
    gallery: Any = KEEP
    seed: Any = KEEP
    steps: Any = KEEP
    settings: Any = KEEP


ATTRIBUTE_WORDS = {"gender": ("woman", "man"), "age": AGES, "beard": tuple(f"beard: {b}" for b in BEARDS)}


@dataclass(frozen=True)
class CompareRun:
    method: Method
    model_name: str
    conds: dict
    handles: dict = field(default_factory=dict)  # strength / window: the steered run only


def _metrics_caption(ev, image: np.ndarray, mask: np.ndarray | None) -> str:
    from collab.evaluator import confusion, miou

    attrs = ev.attributes(image[None])
    words = ", ".join(ATTRIBUTE_WORDS[k][int(v[0])] for k, v in attrs.items() if k in ATTRIBUTE_WORDS)
    if mask is None:
        return f"reads as {words}"
    target = np.asarray(Image.fromarray(mask).resize(image.shape[:2][::-1], Image.NEAREST))
    score = miou(confusion(ev.parse(image[None])[0], target))
    return f"mask mIoU {score:.2f}; reads as {words}"


def _joint_run(state: AppState, req: Request) -> CompareRun | None:
    """The jointly trained baseline on the same conditions, when it is installed, is not the model
    being compared, and every condition it reads was given. It reads no text."""
    if JOINT_MODEL not in state.choices() or req.model_name == state.resolve(JOINT_MODEL):
        return None
    cfg = model_config(state, JOINT_MODEL)
    try:
        conds = conditions_from(cfg, None, req.mask, req.attributes)
    except UserError:
        return None
    return CompareRun(joint_method(state.model(JOINT_MODEL)), JOINT_MODEL, conds)


def compare_runs(state: AppState, req: Request, controls: C.Controls | None = None) -> list[CompareRun]:
    """The evaluation's methods on the given modalities (each alone, composable, collaborative),
    collaborative steered by `controls` when they are set, then the joint baseline when it can read
    the same conditions."""
    model = state.model(req.model_name)
    runs = [CompareRun(m, req.model_name, {n: req.conds[n] for n in m.modalities})
            for m in default_methods(model, tuple(req.conds), ablations=False)]
    if controls is not None and not controls.is_default:
        runs.append(CompareRun(Method("collaborative, steered", tuple(req.conds)), req.model_name, req.conds,
                               controls.handles(model, req.conds)))
    joint = _joint_run(state, req)
    return runs + ([joint] if joint else [])


def compare_stream(state: AppState, req: Request, progress: Progress | None = None,
                   stop: threading.Event | None = None, controls: C.Controls | None = None):
    """Every method from one seed, the gallery filling as each finishes; captions carry the
    evaluator's mask mIoU and attribute reading when one is installed."""
    progress = progress or _no_progress
    yield CompareView(waiting_note(state, req.model_name) or "starting", seed=req.seed, steps=req.steps)
    runs = compare_runs(state, req, controls)
    ev = state.get_evaluator()

    def work(report, cancelled):
        out = []
        for k, run in enumerate(runs):
            progress((k, len(runs)), desc=run.method.name)
            net = state.model(run.model_name)
            with state.turn(run.model_name, cancelled, waiting(report, progress, CompareView)):
                res = generate(net, run.conds, mode=run.method.mode, steps=req.steps, eta=1.0, seed=req.seed,
                               rule=(req.rule or None) if net.diffusers else None,
                               callback=lambda step: raise_if_stopped(cancelled), **run.handles)
            img = res.images[0]
            learned = run.method.mode == "collaborative" and len(run.conds) > 1 and net.diffusers
            title = f"{run.method.name} (rule {res.settings.rule})" if learned else run.method.name
            title += f": {C.describe(res.settings)}" if run.handles else ""
            out.append((img, title if ev is None else f"{title}; {_metrics_caption(ev, img, req.mask)}"))
            report(CompareView(f"{k + 1} of {len(runs)} runs finished", list(out)))
        return out

    for kind, payload in run_in_thread(work, stop):
        if kind == "update":
            yield payload
        elif kind == "stopped":
            yield CompareView("stopped (the gallery holds the runs that finished)")
        else:
            yield CompareView(f"done: {len(payload)} runs from seed {req.seed}, {req.steps} steps", payload, req.seed,
                              req.steps, req.record(methods=[r.method.name for r in runs]))
