"""Sliding-window prediction speed on CPU: this engine vs MONAI vs one untiled forward pass.

Not a test. Same model (random ``unet-mobilenet_v2``), tile, overlap and batch, in one process,
on a 2D 2048² image and a 3D 64×512×512 stack (the 2D net slice by slice; MONAI's
``SliceInferer`` for the stack). ``untiled-cl`` is the untiled pass in the channels-last layout
the engine uses. Throughput is input megapixels per second; peak memory is the
largest resident-set growth over the run, sampled every 5 ms. Needs the ``benchmark`` extra
(``pip install monai psutil``). Run: ``python benchmarks/bench_predict.py [--quick]``.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import numpy as np
import psutil
import torch

from napari_cardioseg.core import nets
from napari_cardioseg.core.models import ModelCard
from napari_cardioseg.core.normalize import apply_normalization, fit_normalization
from napari_cardioseg.core.predict import predict_probabilities


def measure(func: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """Seconds, peak RSS growth in MiB, and the result of ``func()``."""
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], proc.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = func()
    seconds = time.perf_counter() - start
    done.set()
    thread.join()
    return seconds, (peak[0] - base) / 2**20, result


def normalised(image: np.ndarray, card: ModelCard) -> torch.Tensor:
    return torch.from_numpy(apply_normalization(image, fit_normalization(image,
                                                                         card.normalization)))


def run_case(label: str, image: np.ndarray, model: torch.nn.Module, card: ModelCard, tile: int,
             overlap: float, batch: int) -> None:
    from monai.inferers import SliceInferer, sliding_window_inference

    def ours() -> np.ndarray:
        return predict_probabilities(image, model, card, tile=tile, overlap=overlap, batch=batch,
                                     device="cpu")

    def monai() -> np.ndarray:
        x = normalised(image, card)[None, None]
        with torch.inference_mode():
            if image.ndim == 2:
                logits = sliding_window_inference(x, (tile, tile), batch, model, overlap=overlap,
                                                  mode="gaussian")
            else:
                inferer = SliceInferer(roi_size=(tile, tile), sw_batch_size=batch,
                                       spatial_dim=0, overlap=overlap, mode="gaussian")
                logits = inferer(x, model)
        return torch.softmax(logits[0], 0).numpy()

    def untiled(layout: torch.memory_format = torch.contiguous_format) -> np.ndarray:
        x = normalised(image, card)
        x = x[None, None] if image.ndim == 2 else x[:, None]
        net = model.to(memory_format=layout)
        with torch.inference_mode():  # whole 2D image, or whole slices `batch` at a time
            logits = torch.cat([net(part.contiguous(memory_format=layout))
                                for part in torch.split(x, batch)])
        model.to(memory_format=torch.contiguous_format)
        return torch.softmax(logits, 1).numpy()

    def untiled_cl() -> np.ndarray:
        return untiled(torch.channels_last)

    mpx = image.size / 1e6
    print(f"\n{label}: {image.shape}, tile {tile}, overlap {overlap}, batch {batch}")
    results = {}
    for name, func in (("untiled", untiled), ("cardioseg", ours), ("monai", monai),
                       ("untiled-cl", untiled_cl)):
        seconds, memory, prob = measure(func)
        results[name] = (mpx / seconds, prob)
        print(f"  {name:10s} {mpx / seconds:6.3f} Mpx/s  {seconds:7.1f} s  peak +{memory:7.0f} MiB")
    ours_speed = results["cardioseg"][0]
    ours_prob = results["cardioseg"][1]
    ref = results["untiled"][1]
    ref = ref if image.ndim == 2 else np.moveaxis(ref, 1, 0)
    print(f"  ratio cardioseg/monai   {ours_speed / results['monai'][0]:.2f}  (goal >= 1.2)")
    print(f"  ratio cardioseg/untiled {ours_speed / results['untiled'][0]:.2f}  (goal >= 0.9)")
    print(f"  ratio cardioseg/untiled-cl {ours_speed / results['untiled-cl'][0]:.2f}  "
          "(untiled in the engine's channels-last layout)")
    diff = np.abs(ours_prob - ref.reshape(ours_prob.shape)).max()
    print(f"  max |cardioseg - untiled| probability {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="quarter-size inputs")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = {"arch": "unet-mobilenet_v2", "in_channels": 1, "classes": 2}
    torch.manual_seed(0)
    model = nets.build_model(spec).eval()
    card = ModelCard("bench", spec, ["background", "fg"], {"method": "zscore"}, None)
    rng = np.random.default_rng(0)
    size2d, shape3d = (1024, (16, 512, 512)) if args.quick else (2048, (64, 512, 512))
    with torch.inference_mode():  # warm-up (allocator, oneDNN kernels)
        model(torch.zeros(args.batch, 1, args.tile, args.tile))
    run_case("2D", rng.normal(size=(size2d, size2d)).astype(np.float32), model, card,
             args.tile, args.overlap, args.batch)
    run_case("3D", rng.normal(size=shape3d).astype(np.float32), model, card,
             args.tile, args.overlap, args.batch)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{psutil.cpu_count()} CPUs, load average {psutil.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
