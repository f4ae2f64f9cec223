"""The project's own TFLite -> ONNX converter, for the ops the BlazePose detector uses.

``tflite2onnx`` stops at BlazePose's ``DENSIFY`` op (38 of its float16 weights are stored
sparse), so this module reads the flatbuffer with the ``tflite`` package and does the weight
work up front: every DEQUANTIZE/DENSIFY chain that starts at a constant is evaluated in numpy
and becomes one float32 initializer. What remains (Conv, depthwise Conv, Add, Pad, Reshape,
Concatenation, DepthToSpace, ResizeBilinear) maps one-to-one onto ONNX opset 13.

Activations run NCHW inside the graph (what ONNX Conv wants); the edges stay NHWC like the
TFLite model, with a dynamic batch dimension. Tensor and node names are numbered, not taken from
TF, and nothing depends on dict order or time, so converting the same file twice gives the same
bytes (the artifact's sha256 is stable, which the registry relies on).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from serving.errors import ModelValidationError

OPSET = 13
_NCHW = (0, 3, 1, 2)
_NHWC = (0, 2, 3, 1)
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}
_ACTIVATIONS = {0: None, 1: "Relu", 3: "Relu6"}  # tflite.ActivationFunctionType
_SAME, _VALID = 0, 1  # tflite.Padding


def convert_tflite(
    tflite_path: Path,
    onnx_path: Path,
    input_name: str = "input",
    output_names: Sequence[str] | None = None,
) -> Path:
    """Convert ``tflite_path`` to an ONNX file at ``onnx_path``; returns ``onnx_path``."""
    model = tflite_to_onnx(Path(tflite_path).read_bytes(), input_name, output_names)
    onnx_path = Path(onnx_path)
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    onnx_path.write_bytes(model.SerializeToString(deterministic=True))
    return onnx_path


def tflite_to_onnx(
    buf: bytes, input_name: str = "input", output_names: Sequence[str] | None = None
) -> onnx.ModelProto:
    import tflite  # flatbuffer reader, imported here so the module imports anywhere

    return _Converter(tflite, buf).run(input_name, list(output_names or []))


class _Converter:
    def __init__(self, tfl: Any, buf: bytes) -> None:
        self.tfl = tfl
        self.model = tfl.Model.GetRootAsModel(buf, 0)
        if self.model.SubgraphsLength() != 1:
            raise ModelValidationError(
                f"expected one subgraph, found {self.model.SubgraphsLength()}"
            )
        self.g = self.model.Subgraphs(0)
        ops = {v: k for k, v in vars(tfl.BuiltinOperator).items() if not k.startswith("_")}
        self.opnames = []
        for i in range(self.model.OperatorCodesLength()):
            code = self.model.OperatorCodes(i)
            self.opnames.append(ops[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())])
        self.consts: dict[int, np.ndarray] = {}  # tflite tensor index -> value
        self.names: dict[int, str] = {}  # tflite tensor index -> ONNX name (activations)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    # --- tensors ---------------------------------------------------------------------------

    def shape(self, idx: int) -> list[int]:
        return [int(d) for d in self.g.Tensors(idx).ShapeAsNumpy()]

    def edge(self, idx: int) -> list[str | int]:
        """Shape of a graph input/output with a symbolic batch dimension."""
        return ["N", *self.shape(idx)[1:]]

    def const(self, idx: int) -> np.ndarray | None:
        """Value of a constant tensor (raw buffer, still float16/sparse), else None."""
        if idx in self.consts:
            return self.consts[idx]
        t = self.g.Tensors(idx)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        values = np.frombuffer(data.tobytes(), dtype=_DTYPES[t.Type()])
        if t.Sparsity() is None:
            values = values.reshape(self.shape(idx))
        self.consts[idx] = values
        return values

    def densify(self, idx: int) -> np.ndarray:
        """TFLite sparse (CSR per dimension, no blocks) -> dense, vectorised per level."""
        t = self.g.Tensors(idx)
        sp, values, shape = t.Sparsity(), self.const(idx), self.shape(idx)
        assert values is not None
        if sp.BlockMapLength():
            raise ModelValidationError(f"block-sparse tensor {t.Name()!r} is not supported")
        order = [int(d) for d in sp.TraversalOrderAsNumpy()]
        pos = np.zeros(1, dtype=np.int64)
        coords: list[np.ndarray] = []
        for level in range(sp.DimMetadataLength()):
            dm = sp.DimMetadata(level)
            if dm.Format() == 0:  # DENSE
                n = dm.DenseSize()
                coords = [np.repeat(c, n) for c in coords]
                coords.append(np.tile(np.arange(n), pos.size))
                pos = (pos[:, None] * n + np.arange(n)).ravel()
            else:  # SPARSE_CSR
                segs = self._index_vector(dm.ArraySegmentsType(), dm.ArraySegments())
                idxs = self._index_vector(dm.ArrayIndicesType(), dm.ArrayIndices())
                counts = segs[pos + 1] - segs[pos]
                starts = np.repeat(segs[pos] - np.cumsum(counts) + counts, counts)
                new_pos = starts + np.arange(counts.sum())
                coords = [np.repeat(c, counts) for c in coords]
                coords.append(idxs[new_pos])
                pos = new_pos
        dense = np.zeros(shape, dtype=values.dtype)
        dense[tuple(coords[order.index(d)] for d in range(len(shape)))] = values[pos]
        return dense

    def _index_vector(self, kind: int, table: Any) -> np.ndarray:
        cls = {1: self.tfl.Int32Vector, 2: self.tfl.Uint16Vector, 3: self.tfl.Uint8Vector}[kind]
        vec = cls()
        vec.Init(table.Bytes, table.Pos)
        return vec.ValuesAsNumpy().astype(np.int64)

    def init(self, value: np.ndarray, dtype: Any = np.float32) -> str:
        name = f"w{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value, dtype), name))
        return name

    def node(self, op: str, inputs: list[str], out: str | None = None, **attrs: Any) -> str:
        out = out or f"x{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"n{len(self.nodes)}", **attrs))
        return out

    def activation(self, x: str, code: int, out: str | None) -> str:
        if code not in _ACTIVATIONS:
            raise ModelValidationError(f"unsupported fused activation {code}")
        kind = _ACTIVATIONS[code]
        if kind is None:
            return self.node("Identity", [x], out) if out else x
        if kind == "Relu":
            return self.node("Relu", [x], out)
        lo, hi = self.init(np.array(0.0)), self.init(np.array(6.0))
        return self.node("Clip", [x, lo, hi], out)

    # --- graph -----------------------------------------------------------------------------

    def run(self, input_name: str, output_names: list[str]) -> onnx.ModelProto:
        (inp,) = [int(i) for i in self.g.InputsAsNumpy()]
        outs = [int(i) for i in self.g.OutputsAsNumpy()]
        output_names = output_names or [f"output{i}" for i in range(len(outs))]
        if len(output_names) != len(outs):
            raise ModelValidationError(f"model has {len(outs)} outputs, got names {output_names}")
        self.names[inp] = self.node("Transpose", [input_name], perm=list(_NCHW))
        final = dict(zip(outs, output_names, strict=True))
        for i in range(self.g.OperatorsLength()):
            self.op(self.g.Operators(i), final)
        graph = helper.make_graph(
            self.nodes,
            "converted",
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, self.edge(inp))],
            [
                helper.make_tensor_value_info(name, TensorProto.FLOAT, self.edge(i))
                for i, name in final.items()
            ],
            self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="canaryserve"
        )
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model

    def op(self, op: Any, final: dict[int, str]) -> None:
        kind = self.opnames[op.OpcodeIndex()]
        ins = [int(i) for i in op.InputsAsNumpy()]
        (out,) = [int(i) for i in op.OutputsAsNumpy()]
        if kind == "DENSIFY":
            self.consts[out] = self.densify(ins[0])
            return
        if kind == "DEQUANTIZE":
            self.consts[out] = self.dequantize(ins[0])
            return
        opts = op.BuiltinOptions()
        x = self.names.get(ins[0], "")
        is_final = final.get(out)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            self.names[out] = self.conv(kind, op, opts, ins, out, is_final)
        elif kind == "ADD":
            o = self._opts("AddOptions", opts)
            y = self.node("Add", [x, self.names[ins[1]]])
            self.names[out] = self.activation(y, o.FusedActivationFunction(), is_final)
        elif kind == "PAD":
            pads = self.const(ins[1])
            assert pads is not None
            pads = pads[list(_NCHW)] if len(pads) == 4 else pads
            onnx_pads = self.init(np.concatenate([pads[:, 0], pads[:, 1]]), np.int64)
            self.names[out] = self.node("Pad", [x, onnx_pads], is_final)
        elif kind == "RESHAPE":
            if len(self.shape(ins[0])) == 4:  # TFLite reshapes NHWC memory order
                x = self.node("Transpose", [x], perm=list(_NHWC))
            target = self.init(np.array([0, *self.shape(out)[1:]]), np.int64)
            self.names[out] = self.node("Reshape", [x, target], is_final)
        elif kind == "CONCATENATION":
            o = self._opts("ConcatenationOptions", opts)
            rank = len(self.shape(out))
            axis = o.Axis() % rank
            axis = _NCHW.index(axis) if rank == 4 else axis
            y = self.node("Concat", [self.names[i] for i in ins], axis=axis)
            self.names[out] = self.activation(y, o.FusedActivationFunction(), is_final)
        elif kind == "DEPTH_TO_SPACE":
            o = self._opts("DepthToSpaceOptions", opts)
            # TF depth_to_space on NHWC is ONNX DCR mode on NCHW.
            self.names[out] = self.node(
                "DepthToSpace", [x], is_final, blocksize=o.BlockSize(), mode="DCR"
            )
        elif kind == "RESIZE_BILINEAR":
            o = self._opts("ResizeBilinearOptions", opts)
            (_, h, w, _), (_, oh, ow, _) = self.shape(ins[0]), self.shape(out)
            mode = (
                "align_corners"
                if o.AlignCorners()
                else "half_pixel"
                if o.HalfPixelCenters()
                else "asymmetric"
            )
            scales = self.init(np.array([1.0, 1.0, oh / h, ow / w]))
            self.names[out] = self.node(
                "Resize", [x, "", scales], is_final, mode="linear",
                coordinate_transformation_mode=mode,
            )  # fmt: skip
        else:
            raise ModelValidationError(f"TFLite op {kind} is not supported by this converter")

    def dequantize(self, idx: int) -> np.ndarray:
        t = self.g.Tensors(idx)
        value = self.densify(idx) if t.Sparsity() is not None else self.const(idx)
        if value is None:
            raise ModelValidationError(f"DEQUANTIZE of non-constant tensor {t.Name()!r}")
        q = t.Quantization()
        if value.dtype == np.float16 or q is None or q.ScaleLength() == 0:
            return value.astype(np.float32)
        axis = q.QuantizedDimension()
        bshape = [-1 if d == axis else 1 for d in range(value.ndim)]
        scale = q.ScaleAsNumpy().reshape(bshape) if q.ScaleLength() > 1 else q.ScaleAsNumpy()
        zero = q.ZeroPointAsNumpy().reshape(scale.shape)
        return ((value.astype(np.float32) - zero) * scale).astype(np.float32)

    def _opts(self, cls_name: str, table: Any) -> Any:
        o = getattr(self.tfl, cls_name)()
        o.Init(table.Bytes, table.Pos)
        return o

    def conv(
        self, kind: str, op: Any, table: Any, ins: list[int], out: int, final: str | None
    ) -> str:
        depthwise = kind == "DEPTHWISE_CONV_2D"
        o = self._opts("DepthwiseConv2DOptions" if depthwise else "Conv2DOptions", table)
        weight = self.const(ins[1])
        if weight is None:
            raise ModelValidationError(f"{kind} with non-constant weights")
        weight = weight.astype(np.float32)
        _, in_h, in_w, in_c = self.shape(ins[0])
        _, out_h, out_w, out_c = self.shape(out)
        if depthwise:  # [1, kh, kw, C*M] -> [C*M, 1, kh, kw], one group per input channel
            w = weight.transpose(3, 0, 1, 2)
            group = in_c
        else:  # [O, kh, kw, I] -> [O, I, kh, kw]
            w = weight.transpose(0, 3, 1, 2)
            group = 1
        kh, kw = w.shape[2:]
        strides = [o.StrideH(), o.StrideW()]
        dil = [o.DilationHFactor(), o.DilationWFactor()]
        pads = [0, 0, 0, 0]
        if o.Padding() == _SAME:  # TF SAME: the odd pixel of padding goes after
            ph = max((out_h - 1) * strides[0] + (kh - 1) * dil[0] + 1 - in_h, 0)
            pw = max((out_w - 1) * strides[1] + (kw - 1) * dil[1] + 1 - in_w, 0)
            pads = [ph // 2, pw // 2, ph - ph // 2, pw - pw // 2]
        inputs = [self.names[ins[0]], self.init(w)]
        if len(ins) > 2 and ins[2] >= 0:
            bias = self.const(ins[2])
            inputs.append(self.init(np.zeros(out_c) if bias is None else bias))
        y = self.node(
            "Conv", inputs, kernel_shape=[kh, kw], strides=strides, dilations=dil, pads=pads,
            group=group,
        )  # fmt: skip
        return self.activation(y, o.FusedActivationFunction(), final)
