"""Running the neural avatar's network: onnxruntime (CPU, or CUDA with onnxruntime-gpu) or torch on a CUDA GPU.

Both take one G-buffer and code and give premultiplied RGBA, so the renderer
does not care which runs. onnxruntime needs no torch: a laptop renders a
neural avatar with numpy, OpenGL and onnxruntime alone. On an NVIDIA GPU,
torch in half precision is the fast path.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Protocol

import numpy as np

from .neural_avatar_config import GBUFFER_CHANNELS, NeuralAvatarConfig

if TYPE_CHECKING:
    from .neural_avatar_net import NeuralAvatarNet

ONNX_INPUTS = ("gbuffer", "code")
ONNX_OUTPUT = "rgba"
ONNX_OPSET = 18


class NeuralRunner(Protocol):
    #: Where it runs, for status and benchmarks ("onnxruntime CPUExecutionProvider", "torch cuda").
    name: str

    def __call__(self, gbuffer: np.ndarray, code: np.ndarray) -> np.ndarray:
        """(6, S, S) float32 and (code,) float32 -> (4, S, S) float32 premultiplied RGBA."""
        ...


class OnnxRunner:
    """An onnxruntime session; CUDA when onnxruntime-gpu offers it and `cuda` allows, else CPU."""

    def __init__(self, model: bytes, cuda: bool = True, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = ort.get_available_providers()
        providers = [p for p in (("CUDAExecutionProvider",) if cuda else ()) if p in available] + ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(model, options, providers=providers)
        self.name = f"onnxruntime {self._session.get_providers()[0]}"

    def __call__(self, gbuffer: np.ndarray, code: np.ndarray) -> np.ndarray:
        feed = {ONNX_INPUTS[0]: np.ascontiguousarray(gbuffer[None], np.float32), ONNX_INPUTS[1]: np.ascontiguousarray(code[None], np.float32)}
        return self._session.run([ONNX_OUTPUT], feed)[0][0]


class TorchCudaRunner:
    """The network in half precision on a CUDA GPU (torch)."""

    def __init__(self, weights: Mapping[str, np.ndarray], config: NeuralAvatarConfig) -> None:
        import torch

        from .neural_avatar_net import NeuralAvatarNet

        self._torch = torch
        net = NeuralAvatarNet(config)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
        self._net = net.half().cuda().eval()
        self.name = f"torch cuda ({torch.cuda.get_device_name()})"

    def __call__(self, gbuffer: np.ndarray, code: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            g = torch.from_numpy(gbuffer[None]).cuda(non_blocking=True).half()
            c = torch.from_numpy(np.asarray(code, np.float32)[None]).cuda(non_blocking=True).half()
            return self._net(g, c)[0].float().cpu().numpy()


def cuda_available() -> bool:
    """Whether torch is installed and sees an NVIDIA GPU (never fails: no torch means no)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def open_runner(onnx_model: bytes, weights: Mapping[str, np.ndarray], config: NeuralAvatarConfig, device: str = "auto") -> NeuralRunner:
    """`device`: "cuda" (torch on the GPU), "cpu" (onnxruntime on the CPU) or "auto" (CUDA when present)."""
    if device == "cuda" or (device == "auto" and cuda_available()):
        return TorchCudaRunner(weights, config)
    return OnnxRunner(onnx_model, cuda=False)


def export_onnx(net: "NeuralAvatarNet", size: int) -> bytes:
    """The network (a `NeuralAvatarNet`, on the CPU, in eval mode) as ONNX bytes for one `size`×`size` frame."""
    import io
    import warnings

    import torch

    gbuffer = torch.zeros(1, GBUFFER_CHANNELS, size, size)
    code = torch.zeros(1, net.config.code_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: the dynamo exporter needs onnxscript, which the neural extra does not install
        torch.onnx.export(net, (gbuffer, code), buffer, input_names=list(ONNX_INPUTS), output_names=[ONNX_OUTPUT],
                          opset_version=ONNX_OPSET, dynamo=False)
    return buffer.getvalue()
