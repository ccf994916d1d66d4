"""Checking a pack's ONNX network before onnxruntime sees it.

An ONNX file is data, but a hostile one could point at external files, ask
for custom operators or be shaped for another program. A pack's network must
be self-contained, use only the standard operators the neural avatar's
network exports to, and have exactly its inputs and output: per-pixel
features (the learned texture sampled through the G-buffer, normals and
coverage) and a code in, premultiplied RGBA of the same size out.
"""

from __future__ import annotations

from dataclasses import dataclass

from veilcam.models.neural_avatar_config import NeuralAvatarConfig, crop_size_problem
from veilcam.models.neural_runtime import ONNX_INPUTS, ONNX_OPSET, ONNX_OUTPUT

from .pack_manifest import PackContext

#: The operators `export_onnx` writes for `NeuralAvatarNet`, and a few that other exporter versions use for the same layers.
ALLOWED_OPS = frozenset({
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Equal", "Expand", "Gather", "Gemm",
    "Identity", "LeakyRelu", "MatMul", "Mul", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Split", "Sub", "Transpose",
    "Unsqueeze", "Where",
})


@dataclass(frozen=True)
class CheckedNetwork:
    model: bytes  # the ONNX file
    size: int  # it renders size×size crops


def _dims(value: object) -> list[int | str]:
    shape = value.type.tensor_type.shape  # type: ignore[attr-defined]
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in shape.dim]


def check_network(data: bytes, what: str, where: PackContext) -> CheckedNetwork:
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:
        raise where.error(f"{what}: neural avatars need onnx and onnxruntime, which are not installed",
                          "install them: pip install 'veilcam[neural]'") from exc
    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except (DecodeError, onnx.checker.ValidationError, ValueError) as exc:
        raise where.error(f"{what} is not a valid ONNX model ({str(exc).splitlines()[0][:120]})") from exc
    graph = model.graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        raise where.error(f"{what} refers to external data files; a pack's network must be self-contained")
    for opset in model.opset_import:
        if opset.domain not in ("", "ai.onnx") or opset.version > ONNX_OPSET:
            raise where.error(f"{what} needs operator set {opset.domain or 'ai.onnx'} {opset.version} (this VeilCam reads ai.onnx up to {ONNX_OPSET})",
                              "update VeilCam or re-create the avatar")
    if any(a.HasField("g") or a.graphs for n in graph.node for a in n.attribute):
        raise where.error(f"{what} holds subgraphs (control flow), which a neural avatar's network never has")
    bad = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx") or n.op_type not in ALLOWED_OPS})
    if bad:
        raise where.error(f"{what} uses operators a neural avatar never needs ({', '.join(bad[:3])})")
    inputs = {i.name: _dims(i) for i in graph.input if i.name not in {t.name for t in graph.initializer}}
    outputs = {o.name: _dims(o) for o in graph.output}
    features, code, rgba = inputs.get(ONNX_INPUTS[0]), inputs.get(ONNX_INPUTS[1]), outputs.get(ONNX_OUTPUT)
    size = features[2] if features and len(features) == 4 else None
    config = NeuralAvatarConfig()
    ok = (set(inputs) == set(ONNX_INPUTS) and set(outputs) == {ONNX_OUTPUT} and isinstance(size, int)
          and features == [1, config.features, size, size] and code == [1, config.code_size] and rgba == [1, 4, size, size]
          and crop_size_problem(size, config) is None)
    if not ok:
        raise where.error(f"{what} does not have the neural avatar's inputs and output "
                          f"(features [1, {config.features}, S, S], code [1, {config.code_size}] -> rgba [1, 4, S, S]; got {inputs} -> {outputs})",
                          "re-create the avatar with this VeilCam (veilcam avatar enroll)")
    return CheckedNetwork(data, int(size))  # type: ignore[arg-type]
