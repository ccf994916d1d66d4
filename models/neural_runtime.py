"""Running the neural avatar's network: onnxruntime (CPU, or CUDA with onnxruntime-gpu) or torch on a CUDA GPU.

Both take one frame's input and code and give premultiplied RGBA. The ONNX
network starts after the learned texture's lookup, which OpenGL does while
drawing the G-buffer (`head_gbuffer`): on a CPU, onnxruntime's GridSample was
more than half of the network's time, and the ONNX file no longer carries the
texture. Torch on an NVIDIA GPU takes the smaller G-buffer and samples the
texture itself, in half precision: the fast path. onnxruntime needs no torch:
a laptop renders a neural avatar with numpy, OpenGL and onnxruntime alone.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping, Protocol

import numpy as np

from .neural_avatar_config import NeuralAvatarConfig

if TYPE_CHECKING:
    from .neural_avatar_net import NeuralAvatarNet

ONNX_INPUTS = ("features", "code")
ONNX_OUTPUT = "rgba"
ONNX_OPSET = 18


class NeuralRunner(Protocol):
    #: Where it runs, for status and benchmarks ("onnxruntime CPUExecutionProvider", "torch cuda").
    name: str
    #: True: it takes the per-pixel features (`NeuralAvatarNet.features`, the texture sampled by OpenGL); False: the G-buffer.
    takes_features: bool

    def __call__(self, pixels: np.ndarray, code: np.ndarray) -> np.ndarray:
        """Features (F, S, S) or G-buffer (6, S, S) float32, and (code,) float32 -> (4, S, S) float32 premultiplied RGBA."""
        ...


class OnnxRunner:
    """An onnxruntime session of `export_onnx`'s network; CUDA when onnxruntime-gpu offers it and `cuda` allows, else CPU."""

    takes_features = True

    def __init__(self, model: bytes, cuda: bool = True, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle workers sleep instead of spinning: they would take the cores the tracker needs (in `veilcam bench` on
        # 2 cores, spinning cost 0.65 of a core and put the end-to-end p95 at 58 ms instead of 35 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = ort.get_available_providers()
        providers = [p for p in (("CUDAExecutionProvider",) if cuda else ()) if p in available] + ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(model, options, providers=providers)
        self.name = f"onnxruntime {self._session.get_providers()[0]}"

    def __call__(self, features: np.ndarray, code: np.ndarray) -> np.ndarray:
        feed = {ONNX_INPUTS[0]: np.ascontiguousarray(features[None], np.float32), ONNX_INPUTS[1]: np.ascontiguousarray(code[None], np.float32)}
        return self._session.run([ONNX_OUTPUT], feed)[0][0]


def half_precision_forward(net: "NeuralAvatarNet", gbuffer: "torch.Tensor", code: "torch.Tensor") -> "torch.Tensor":
    """`net` in half precision on a float32 G-buffer: the G-buffer stays float32 up to the texture lookup.

    Half-precision texture coordinates step by an eighth of a texel on the 512² atlas; where the learned texture
    has detail, that moved the lookup enough to show: on an H200, a trained avatar's crops differed from
    onnxruntime's float32 ones by up to 0.30 (of 1) with the G-buffer rounded to half, 0.03 this way.
    """
    import torch

    return net.decode(net.features(gbuffer).to(torch.half), code.to(torch.half))


class TorchCudaRunner:
    """The network in half precision on a CUDA GPU (torch), replayed as a CUDA graph.

    In eager mode a 256² crop took 1.3-1.4 ms and a 512² one 1.9-2.1 ms on an
    H200, with page-locked buffers or without: the time went to launching the
    network's few dozen small kernels one by one, not to computing them. So each crop size gets its network captured
    once as a CUDA graph, with fixed device buffers, and page-locked host
    buffers for the G-buffer going up and the crop coming down.
    """

    takes_features = False

    def __init__(self, weights: Mapping[str, np.ndarray], config: NeuralAvatarConfig) -> None:
        import torch

        from .neural_avatar_net import NeuralAvatarNet

        self._torch = torch
        net = NeuralAvatarNet(config)
        net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
        self._net = net.half().cuda().eval()
        self._code_size = config.code_size
        self.name = f"torch cuda ({torch.cuda.get_device_name()})"
        self._graphs: dict[tuple[int, ...], _CapturedNetwork] = {}

    def __call__(self, gbuffer: np.ndarray, code: np.ndarray) -> np.ndarray:
        torch = self._torch
        captured = self._graphs.get(gbuffer.shape)
        if captured is None:
            captured = self._graphs[gbuffer.shape] = _CapturedNetwork(self._net, gbuffer.shape, self._code_size)
        np.copyto(captured.host_in.numpy()[0], gbuffer)
        np.copyto(captured.host_code.numpy()[0], code)
        captured.device_in.copy_(captured.host_in, non_blocking=True)
        captured.device_code.copy_(captured.host_code, non_blocking=True)
        captured.graph.replay()
        captured.host_out.copy_(captured.device_out, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return captured.host_out.numpy().copy()


class _CapturedNetwork:
    """One crop size's CUDA graph of the network and the buffers it reads and writes."""

    def __init__(self, net: "NeuralAvatarNet", shape: tuple[int, ...], code_size: int) -> None:
        import torch

        self.host_in = torch.empty((1, *shape), pin_memory=True)
        self.host_code = torch.empty((1, code_size), pin_memory=True)
        self.host_out = torch.empty((4, *shape[1:]), pin_memory=True)
        self.device_in = torch.zeros((1, *shape), device="cuda")
        self.device_code = torch.zeros((1, code_size), device="cuda")
        with torch.inference_mode():
            side = torch.cuda.Stream()  # warm-up away from the capture, as torch.cuda.graphs asks
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    half_precision_forward(net, self.device_in, self.device_code)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.device_out = half_precision_forward(net, self.device_in, self.device_code)[0].float()


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
    """The network (a `NeuralAvatarNet`, on the CPU, in eval mode) after its texture lookup, as ONNX bytes for one
    `size`×`size` frame: (features, code) -> rgba."""
    import io
    import warnings

    import torch

    from .neural_avatar_net import NeuralAvatarDecoder

    features = torch.zeros(1, net.config.features, size, size)
    code = torch.zeros(1, net.config.code_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice: the dynamo exporter needs onnxscript, which the neural extra does not install
        torch.onnx.export(NeuralAvatarDecoder(net).eval(), (features, code), buffer, input_names=list(ONNX_INPUTS), output_names=[ONNX_OUTPUT],
                          opset_version=ONNX_OPSET, dynamo=False)
    return buffer.getvalue()
