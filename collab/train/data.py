"""Training data as torch Datasets: a resumable distributed sampler, the official layout (CelebA-HQ /
CelebAMask-HQ / CelebA-Dialog, or the face world written in it), an on-disk latent cache, and the
demo's in-memory world behind the same item keys.

Item keys (every dataset yields the ones it has; stages take what they need):
    image [3, H, W] in [-1, 1]           latent_mean, latent_std [C, h, w] (unscaled VAE posterior)
    mask [19, 1024] one-hot float        tokens [L] int64 (the model's text tokenizer)
    text_states [L, width] (frozen text backbone, cached)    attributes [K] 0/1 float    index int64
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class ResumableSampler(Sampler[int]):
    """Every epoch a fresh permutation of the dataset (seeded by seed and epoch), split over ranks
    (rank r takes items r, r + W, ...; the uneven tail is dropped so ranks stay in step). `epoch`
    and `position` (items this rank has consumed in the epoch) are the data position a checkpoint
    stores, so a resumed run sees exactly the batches an uninterrupted one would."""

    def __init__(self, size: int, seed: int = 0, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch, self.position = 0, 0

    def per_rank(self) -> int:
        return self.size // self.world_size

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=g)
        else:
            order = torch.arange(self.size)
        return order[self.rank::self.world_size][:self.per_rank()]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.position:].tolist())

    def __len__(self) -> int:
        return self.per_rank() - self.position

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def restore(self, state: dict) -> None:
        self.epoch, self.position = int(state.get("epoch", 0)), int(state.get("position", 0))


class Batches:
    """An endless stream of batches over epochs, with a position that can be saved and restored."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int, world_size: int, workers: int = 0,
                 pin_memory: bool = False) -> None:
        self.sampler = ResumableSampler(len(dataset), seed, rank, world_size)
        if self.sampler.per_rank() < batch_size:
            raise ValueError(f"{len(dataset)} training samples over {world_size} process(es) give no full batch of "
                             f"{batch_size} per process: lower the batch size or add data")
        self.batch_size = batch_size
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 drop_last=True, pin_memory=pin_memory, persistent_workers=False,
                                 collate_fn=collate)
        self._it: Iterator | None = None

    def __next__(self):
        if self._it is None:
            self._it = iter(self.loader)
        try:
            batch = next(self._it)
        except StopIteration:
            self.sampler.epoch, self.sampler.position = self.sampler.epoch + 1, 0
            self._it = iter(self.loader)
            batch = next(self._it)
        self.sampler.position += self.batch_size
        return batch

    def state(self) -> dict[str, int]:
        return self.sampler.state()

    def restore(self, state: dict) -> None:
        self.sampler.restore(state)
        if self.sampler.position + self.batch_size > self.sampler.per_rank():
            self.sampler.epoch, self.sampler.position = self.sampler.epoch + 1, 0
        self._it = None


def collate(items):
    """Stack tensors, keep strings as lists; a dataset's `__getitems__` may hand over a ready batch."""
    if isinstance(items, dict):
        return items
    return torch.utils.data.default_collate(items)


# ---------------------------------------------------------------- the official layout (real data)


class LayoutDataset(Dataset):
    """Training items from the official layout, read one file at a time (no whole-dataset tensors).
    Captions are tokenized here (in the worker) by `tokenizer` when given (an object with
    `prepare(list[str]) -> ids [B, L]`, e.g. collab.minilm.text_input or a WordPiece tokenizer's
    wrapper); `latents` (a LatentCache) adds the cached posterior of each image."""

    def __init__(self, root: str | Path, phase: str = "train", test_size: int = 3000, size: int | None = None,
                 tokenizer=None, latents: LatentCache | None = None, with_images: bool = True) -> None:
        from collab.data.layout import OfficialLayoutDataset

        self.base = OfficialLayoutDataset.from_root(root, phase=phase, test_size=test_size, size=size)
        self.tokenizer, self.latents, self.with_images = tokenizer, latents, with_images
        if latents is not None and len(latents) != len(self.base):
            raise ValueError(f"the latent cache {latents.path} holds {len(latents)} images, the layout's "
                             f"{phase} split {len(self.base)}: delete the cache to rebuild it")

    @property
    def attribute_names(self) -> tuple[str, ...]:
        return self.base.attribute_names

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = self.base[index]
        out = {"index": torch.tensor(index), "mask": item["mask"]}
        if self.with_images:
            out["image"] = item["image"]
        if self.tokenizer is not None:
            out["tokens"] = self.tokenizer.prepare([item["caption"]])[0]
        if "attributes" in item:
            out["attributes"] = item["attributes"]
        if self.latents is not None:
            out["latent_mean"], out["latent_std"] = self.latents[index]
        return out


class LatentCache:
    """VAE posteriors (mean, std; float16) of every image in one memory-mapped .npy file:
    read item by item, never loaded whole. Written in shards by every rank, completed by a marker."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.array = np.load(self.path, mmap_mode="r")  # [N, 2, C, h, w]

    def __len__(self) -> int:
        return self.array.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = torch.from_numpy(np.array(self.array[index], dtype=np.float32))
        return pair[0], pair[1]

    @staticmethod
    def done(path: Path) -> bool:
        return Path(str(path) + ".done").exists()

    @classmethod
    @torch.no_grad()
    def build(cls, path: Path, dataset: Dataset, encode, latent_shape: tuple[int, int, int], engine,
              batch_size: int = 16, workers: int = 0) -> LatentCache:
        """Encode `dataset`'s images with `encode(images) -> posterior` on every rank (rank r takes
        items r, r + W, ...) into `path`; each rank writes only its own rows of the shared file."""
        path = Path(path)
        if not cls.done(path):
            if engine.is_main:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(len(dataset), 2, *latent_shape))
            engine.barrier()
            out = np.load(path, mmap_mode="r+")
            mine = list(range(engine.rank, len(dataset), engine.world_size))
            loader = DataLoader(torch.utils.data.Subset(dataset, mine), batch_size=batch_size, num_workers=workers)
            for batch in loader:
                post = encode(batch["image"].to(engine.device))
                rows = batch["index"].numpy()
                out[rows, 0] = post.mean.float().cpu().numpy()
                out[rows, 1] = post.std.float().cpu().numpy()
            out.flush()
            del out
            engine.barrier()
            if engine.is_main:
                Path(str(path) + ".done").write_text(str(len(dataset)))
            engine.barrier()
        return cls(path)


# ---------------------------------------------------------------- the demo's world, in memory


class WorldDataset(Dataset):
    """The demo's rendered world kept in memory (its tensors are small), with the item keys of the
    layout path. `__getitems__` indexes whole batches at once: as cheap per step as the old loop."""

    def __init__(self, world, latents: dict | None = None, keys: tuple[str, ...] = ("image",),
                 text_states: torch.Tensor | None = None) -> None:
        self.world, self.latents, self.keys, self.text_states = world, latents, keys, text_states

    def __len__(self) -> int:
        return len(self.world.names)

    def __getitem__(self, index: int) -> dict:
        batch = self.__getitems__([index])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, indices: list[int]) -> dict:
        idx = torch.as_tensor(indices)
        w = self.world
        out = {"index": idx}
        if "image" in self.keys:
            out["image"] = w.batch_images(idx)
        if "mask" in self.keys:
            out["mask"] = w.batch_masks(idx)
        if "tokens" in self.keys:
            out["tokens"] = w.tokens[idx]
        if "attributes" in self.keys and w.attributes is not None:
            out["attributes"] = w.attributes[idx]
        if "text_states" in self.keys and self.text_states is not None:
            out["text_states"] = self.text_states[idx].float()
        if self.latents is not None:
            out["latent_mean"], out["latent_std"] = self.latents["mean"][idx], self.latents["std"][idx]
        return out


def describe(batch) -> str:
    """What a batch was, for error messages: its images' indices."""
    if isinstance(batch, dict) and "index" in batch:
        return "items " + ", ".join(str(int(i)) for i in batch["index"][:16])
    return "unknown"
