"""A minimal Caffe protobuf schema, built at import time (no ``protoc``, no generated code).

Only the messages and fields that a deploy ``.prototxt`` or a trained ``.caffemodel`` of the
usual model zoos carry are declared, with the field numbers, types and defaults of Caffe's
published ``caffe.proto`` (package ``caffe``, proto2), so the binary format reads exactly as
Caffe wrote it. Fields we do not declare are kept as unknown fields by the binary parser and
skipped by :func:`parse_prototxt`.

The classes are made from a ``FileDescriptorProto`` filled in Python and a private
``DescriptorPool``, which works with every protobuf release from 3.20 on (the generated
``caffe_pb2.py`` of old packages does not import with protobuf >= 4).

Exported message classes: :data:`NetParameter`, :data:`LayerParameter`,
:data:`V1LayerParameter`, :data:`BlobProto`, :data:`BlobShape` and the layer parameter
messages (:data:`ConvolutionParameter`, ...).
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, text_format

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bool": _F.TYPE_BOOL,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
}

# Enums: name -> [(value name, number), ...]; declared inside the message named before the dot.
_ENUMS: dict[str, list[tuple[str, int]]] = {
    "Phase": [("TRAIN", 0), ("TEST", 1)],
    "PoolingParameter.PoolMethod": [("MAX", 0), ("AVE", 1), ("STOCHASTIC", 2)],
    "PoolingParameter.RoundMode": [("CEIL", 0), ("FLOOR", 1)],
    "LRNParameter.NormRegion": [("ACROSS_CHANNELS", 0), ("WITHIN_CHANNEL", 1)],
    "EltwiseParameter.EltwiseOp": [("PROD", 0), ("SUM", 1), ("MAX", 2)],
    "V1LayerParameter.LayerType": [
        ("NONE", 0),
        ("ABSVAL", 35),
        ("ACCURACY", 1),
        ("ARGMAX", 30),
        ("BNLL", 2),
        ("CONCAT", 3),
        ("CONTRASTIVE_LOSS", 37),
        ("CONVOLUTION", 4),
        ("DATA", 5),
        ("DECONVOLUTION", 39),
        ("DROPOUT", 6),
        ("DUMMY_DATA", 32),
        ("EUCLIDEAN_LOSS", 7),
        ("ELTWISE", 25),
        ("EXP", 38),
        ("FLATTEN", 8),
        ("HDF5_DATA", 9),
        ("HDF5_OUTPUT", 10),
        ("HINGE_LOSS", 28),
        ("IM2COL", 11),
        ("IMAGE_DATA", 12),
        ("INFOGAIN_LOSS", 13),
        ("INNER_PRODUCT", 14),
        ("LRN", 15),
        ("MEMORY_DATA", 29),
        ("MULTINOMIAL_LOGISTIC_LOSS", 16),
        ("MVN", 34),
        ("POOLING", 17),
        ("POWER", 26),
        ("RELU", 18),
        ("SIGMOID", 19),
        ("SIGMOID_CROSS_ENTROPY_LOSS", 27),
        ("SILENCE", 36),
        ("SOFTMAX", 20),
        ("SOFTMAX_LOSS", 21),
        ("SPLIT", 22),
        ("SLICE", 33),
        ("TANH", 23),
        ("WINDOW_DATA", 24),
        ("THRESHOLD", 31),
    ],
}

# Messages: name -> [(field name, number, type, label, default or None), ...].
# label: "" optional, "*" repeated, "*p" repeated packed. A type that is not a scalar names a
# message or an enum of this schema.
_MESSAGES: dict[str, list[tuple]] = {
    "BlobShape": [("dim", 1, "int64", "*p", None)],
    "BlobProto": [
        ("shape", 7, "BlobShape", "", None),
        ("data", 5, "float", "*p", None),
        ("diff", 6, "float", "*p", None),
        ("double_data", 8, "double", "*p", None),
        ("double_diff", 9, "double", "*p", None),
        ("num", 1, "int64", "", "0"),
        ("channels", 2, "int64", "", "0"),
        ("height", 3, "int64", "", "0"),
        ("width", 4, "int64", "", "0"),
    ],
    "NetState": [
        ("phase", 1, "Phase", "", "TEST"),
        ("level", 2, "int32", "", "0"),
        ("stage", 3, "string", "*", None),
    ],
    "NetStateRule": [
        ("phase", 1, "Phase", "", None),
        ("min_level", 2, "int32", "", None),
        ("max_level", 3, "int32", "", None),
        ("stage", 4, "string", "*", None),
        ("not_stage", 5, "string", "*", None),
    ],
    "NetParameter": [
        ("name", 1, "string", "", None),
        ("input", 3, "string", "*", None),
        ("input_shape", 8, "BlobShape", "*", None),
        ("input_dim", 4, "int32", "*", None),
        ("force_backward", 5, "bool", "", "false"),
        ("state", 6, "NetState", "", None),
        ("debug_info", 7, "bool", "", "false"),
        ("layer", 100, "LayerParameter", "*", None),
        ("layers", 2, "V1LayerParameter", "*", None),
    ],
    "ConvolutionParameter": [
        ("num_output", 1, "uint32", "", None),
        ("bias_term", 2, "bool", "", "true"),
        ("pad", 3, "uint32", "*", None),
        ("kernel_size", 4, "uint32", "*", None),
        ("stride", 6, "uint32", "*", None),
        ("dilation", 18, "uint32", "*", None),
        ("pad_h", 9, "uint32", "", "0"),
        ("pad_w", 10, "uint32", "", "0"),
        ("kernel_h", 11, "uint32", "", None),
        ("kernel_w", 12, "uint32", "", None),
        ("stride_h", 13, "uint32", "", None),
        ("stride_w", 14, "uint32", "", None),
        ("group", 5, "uint32", "", "1"),
        ("axis", 16, "int32", "", "1"),
        ("force_nd_im2col", 17, "bool", "", "false"),
    ],
    "PoolingParameter": [
        ("pool", 1, "PoolingParameter.PoolMethod", "", "MAX"),
        ("pad", 4, "uint32", "", "0"),
        ("pad_h", 9, "uint32", "", "0"),
        ("pad_w", 10, "uint32", "", "0"),
        ("kernel_size", 2, "uint32", "", None),
        ("kernel_h", 5, "uint32", "", None),
        ("kernel_w", 6, "uint32", "", None),
        ("stride", 3, "uint32", "", "1"),
        ("stride_h", 7, "uint32", "", None),
        ("stride_w", 8, "uint32", "", None),
        ("global_pooling", 12, "bool", "", "false"),
        ("round_mode", 13, "PoolingParameter.RoundMode", "", "CEIL"),
    ],
    "ReLUParameter": [("negative_slope", 1, "float", "", "0")],
    "LRNParameter": [
        ("local_size", 1, "uint32", "", "5"),
        ("alpha", 2, "float", "", "1"),
        ("beta", 3, "float", "", "0.75"),
        ("norm_region", 4, "LRNParameter.NormRegion", "", "ACROSS_CHANNELS"),
        ("k", 5, "float", "", "1"),
    ],
    "InnerProductParameter": [
        ("num_output", 1, "uint32", "", None),
        ("bias_term", 2, "bool", "", "true"),
        ("axis", 5, "int32", "", "1"),
        ("transpose", 6, "bool", "", "false"),
    ],
    "DropoutParameter": [("dropout_ratio", 1, "float", "", "0.5")],
    "ConcatParameter": [
        ("axis", 2, "int32", "", "1"),
        ("concat_dim", 1, "uint32", "", "1"),
    ],
    "EltwiseParameter": [
        ("operation", 1, "EltwiseParameter.EltwiseOp", "", "SUM"),
        ("coeff", 2, "float", "*", None),
        ("stable_prod_grad", 3, "bool", "", "true"),
    ],
    "BatchNormParameter": [
        ("use_global_stats", 1, "bool", "", None),
        ("moving_average_fraction", 2, "float", "", "0.999"),
        ("eps", 3, "float", "", "1e-05"),
    ],
    "ScaleParameter": [
        ("axis", 1, "int32", "", "1"),
        ("num_axes", 2, "int32", "", "1"),
        ("bias_term", 4, "bool", "", "false"),
    ],
    "SoftmaxParameter": [("axis", 2, "int32", "", "1")],
    "FlattenParameter": [
        ("axis", 1, "int32", "", "1"),
        ("end_axis", 2, "int32", "", "-1"),
    ],
    "InputParameter": [("shape", 1, "BlobShape", "*", None)],
    "LayerParameter": [
        ("name", 1, "string", "", None),
        ("type", 2, "string", "", None),
        ("bottom", 3, "string", "*", None),
        ("top", 4, "string", "*", None),
        ("phase", 10, "Phase", "", None),
        ("loss_weight", 5, "float", "*", None),
        ("blobs", 7, "BlobProto", "*", None),
        ("propagate_down", 11, "bool", "*", None),
        ("include", 8, "NetStateRule", "*", None),
        ("exclude", 9, "NetStateRule", "*", None),
        ("batch_norm_param", 139, "BatchNormParameter", "", None),
        ("concat_param", 104, "ConcatParameter", "", None),
        ("convolution_param", 106, "ConvolutionParameter", "", None),
        ("dropout_param", 108, "DropoutParameter", "", None),
        ("eltwise_param", 110, "EltwiseParameter", "", None),
        ("flatten_param", 135, "FlattenParameter", "", None),
        ("inner_product_param", 117, "InnerProductParameter", "", None),
        ("input_param", 143, "InputParameter", "", None),
        ("lrn_param", 118, "LRNParameter", "", None),
        ("pooling_param", 121, "PoolingParameter", "", None),
        ("relu_param", 123, "ReLUParameter", "", None),
        ("scale_param", 142, "ScaleParameter", "", None),
        ("softmax_param", 125, "SoftmaxParameter", "", None),
    ],
    "V1LayerParameter": [
        ("bottom", 2, "string", "*", None),
        ("top", 3, "string", "*", None),
        ("name", 4, "string", "", None),
        ("include", 32, "NetStateRule", "*", None),
        ("exclude", 33, "NetStateRule", "*", None),
        ("type", 5, "V1LayerParameter.LayerType", "", None),
        ("blobs", 6, "BlobProto", "*", None),
        ("blobs_lr", 7, "float", "*", None),
        ("weight_decay", 8, "float", "*", None),
        ("loss_weight", 35, "float", "*", None),
        ("concat_param", 9, "ConcatParameter", "", None),
        ("convolution_param", 10, "ConvolutionParameter", "", None),
        ("dropout_param", 12, "DropoutParameter", "", None),
        ("eltwise_param", 24, "EltwiseParameter", "", None),
        ("inner_product_param", 17, "InnerProductParameter", "", None),
        ("lrn_param", 18, "LRNParameter", "", None),
        ("pooling_param", 19, "PoolingParameter", "", None),
        ("relu_param", 30, "ReLUParameter", "", None),
        ("softmax_param", 39, "SoftmaxParameter", "", None),
    ],
}

_LABELS = {"": _F.LABEL_OPTIONAL, "*": _F.LABEL_REPEATED, "*p": _F.LABEL_REPEATED}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="netdissect_caffe.proto", package="caffe", syntax="proto2")
    messages = {}
    for name in _MESSAGES:
        messages[name] = proto.message_type.add(name=name)
    for full, values in _ENUMS.items():
        owner, _, enum_name = full.rpartition(".")
        parent = messages[owner].enum_type if owner else proto.enum_type
        enum = parent.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    for name, fields in _MESSAGES.items():
        for field_name, number, kind, label, default in fields:
            field = messages[name].field.add(name=field_name, number=number, label=_LABELS[label])
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            elif kind in _ENUMS:
                field.type = _F.TYPE_ENUM
                field.type_name = f".caffe.{kind}"
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = f".caffe.{kind}"
            if default is not None:
                field.default_value = default
            if label == "*p":
                field.options.packed = True
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str):
    descriptor = _POOL.FindMessageTypeByName(f"caffe.{name}")
    try:
        from google.protobuf.message_factory import GetMessageClass
    except ImportError:  # protobuf < 4.21
        from google.protobuf.message_factory import MessageFactory

        return MessageFactory(_POOL).GetPrototype(descriptor)
    return GetMessageClass(descriptor)


NetParameter = _message_class("NetParameter")
LayerParameter = _message_class("LayerParameter")
V1LayerParameter = _message_class("V1LayerParameter")
BlobProto = _message_class("BlobProto")
BlobShape = _message_class("BlobShape")
ConvolutionParameter = _message_class("ConvolutionParameter")
PoolingParameter = _message_class("PoolingParameter")
LRNParameter = _message_class("LRNParameter")
EltwiseParameter = _message_class("EltwiseParameter")

#: V1 layer type enum name -> the type string of the current format.
V1_TYPES = {
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DATA": "Data",
    "DECONVOLUTION": "Deconvolution",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
    "NONE": "NONE",
}


def v1_type_name(layer) -> str:
    """The current-format type string of a V1 layer."""
    name = V1LayerParameter.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[layer.type].name
    return V1_TYPES.get(name, name)


def parse_prototxt(text: str):
    """Parse a ``.prototxt`` into a :data:`NetParameter`, skipping fields this schema lacks.

    Raises ``google.protobuf.text_format.ParseError`` (with line and column) on malformed text.
    """
    net = NetParameter()
    text_format.Parse(text, net, allow_unknown_field=True)
    return net
