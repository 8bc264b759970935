@testable import Checkpoint
import XCTest
import TestSupport

final class TensorTests: XCTestCase {
    func testHalfToFloatMatchesIEEE754Binary16() {
        XCTAssertEqual(halfToFloat(0x3C00), 1.0)
        XCTAssertEqual(halfToFloat(0xC000), -2.0)
        XCTAssertEqual(halfToFloat(0x7BFF), 65504.0)              // largest finite half
        XCTAssertEqual(halfToFloat(0x0001), Float(pow(2.0, -24.0))) // smallest subnormal
        XCTAssertEqual(halfToFloat(0x7C00), .infinity)
        XCTAssertTrue(halfToFloat(0x7E00).isNaN)
    }

    func testBFloat16IsTheHighHalfOfFloat32() throws {
        // 0x3F80 is 1.0 in bf16; as f16 it would be 1.875.
        let t = try Tensor(dtype: .bfloat16, shape: [2], data: Data([0x80, 0x3F, 0x00, 0xC0]))
        XCTAssertEqual(t.floats(), [1.0, -2.0])
    }

    func testByteCountIsChecked() {
        XCTAssertThrowsError(try Tensor(dtype: .float32, shape: [2, 3], data: Data(count: 20)))
        XCTAssertNoThrow(try Tensor(dtype: .float32, shape: [2, 0], data: Data()))
        XCTAssertEqual(Tensor(int64: 7).count, 1)
    }

    func testAZeroElementShapeWhoseOtherDimensionsOverflowIsRefused() {
        // No elements, but the C-contiguous strides of [0, 2^62, 2^62] overflow (torch.empty and
        // np.empty refuse it too), in whichever order the zero comes.
        for shape in [[0, 1 << 62, 1 << 62], [1 << 62, 0, 1 << 62], [1 << 62, 1 << 62, 0]] {
            XCTAssertNil(shape.checkedProduct, "\(shape)")
            XCTAssertThrowsError(try Tensor(dtype: .float32, shape: shape, data: Data()), "\(shape)")
        }
        XCTAssertEqual([0, 1 << 31, 1 << 31].checkedProduct, 0)
        XCTAssertEqual([3, 0, 5].checkedProduct, 0)
        XCTAssertEqual([3, 5].checkedProduct, 15)
        XCTAssertNil([3, -1].checkedProduct)
        XCTAssertNil([0, -1].checkedProduct)
    }
}
