import Foundation
import SwiftProtobuf

/// Builds an ONNX `GraphProto` (schemas/onnx/onnx-subset.proto) node by node: float32 initializers
/// in `raw_data` (little-endian, row-major, as the ONNX IR specification requires of `raw_data`),
/// nodes in the default `ai.onnx` domain in the order they are added (which must be topological),
/// and typed graph inputs/outputs with symbolic dimensions.
struct ONNXGraphBuilder {
    private(set) var graph = Onnx_GraphProto()
    /// Bytes of initializer data so far (the 2 GiB protobuf limit is checked against it).
    private(set) var initializerBytes = 0

    init(name: String) { graph.name = name }

    /// Adds a float32 initializer.
    /// - Returns: `name`, for use as a node input.
    @discardableResult
    mutating func initializer(_ name: String, _ values: [Float], shape: [Int], doc: String? = nil) -> String {
        precondition(values.count == shape.reduce(1, *), "initializer \(name): \(values.count) values for shape \(shape)")
        var t = Onnx_TensorProto()
        t.name = name
        t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        t.dims = shape.map(Int64.init)
        var raw = Data(count: values.count * 4)
        raw.withUnsafeMutableBytes { out in
            for (i, v) in values.enumerated() { out.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self) }
        }
        t.rawData = raw
        if let doc { t.docString = doc }
        graph.initializer.append(t)
        initializerBytes += values.count * 4
        return name
    }

    /// Adds a node of operator `op` whose single output is named `output` (default: `name`).
    /// - Returns: the output's name.
    @discardableResult
    mutating func node(_ op: String, name: String, inputs: [String], output: String? = nil,
                       attributes: [Onnx_AttributeProto] = []) -> String {
        var n = Onnx_NodeProto()
        n.opType = op
        n.name = name
        n.input = inputs
        n.output = [output ?? name]
        n.attribute = attributes
        graph.node.append(n)
        return output ?? name
    }

    /// A float32 tensor value's type with the given dimensions: an `Int` is fixed, a `String` symbolic.
    static func floatTensor(_ name: String, dims: [ONNXDimension], doc: String) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            switch d {
            case .fixed(let n): dim.dimValue = Int64(n)
            case .symbolic(let s): dim.dimParam = s
            }
            return dim
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        info.docString = doc
        return info
    }

    mutating func input(_ info: Onnx_ValueInfoProto) { graph.input.append(info) }
    mutating func output(_ info: Onnx_ValueInfoProto) { graph.output.append(info) }

    static func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = values.map(Int64.init)
        return a
    }

    static func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(value)
        return a
    }

    static func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = value
        return a
    }
}

/// One dimension of a graph input or output: a number, or a name shared by dimensions of equal size.
enum ONNXDimension {
    case fixed(Int)
    case symbolic(String)
}
