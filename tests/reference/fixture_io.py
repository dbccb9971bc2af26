"""fixture_io.py - writes the named-array fixture files read by tests/fixture.h.

Format (little-endian): for each array, one ASCII header line
    "<name> <dtype> <ndim> <d0> <d1> ...\n"      dtype in {f32, f64, i64}
followed by the raw row-major bytes, then the next header. Names contain no spaces.
"""
import numpy as np

_DT = {np.dtype('float32'): 'f32', np.dtype('float64'): 'f64', np.dtype('int64'): 'i64'}


def write_fixture(path, arrays):
    """arrays: iterable of (name, array-like) or a dict (insertion order kept)."""
    items = arrays.items() if isinstance(arrays, dict) else arrays
    with open(path, 'wb') as f:
        for name, a in items:
            a = np.asarray(a)
            if a.dtype not in _DT:
                a = a.astype(np.float32 if a.dtype.kind == 'f' else np.int64)
            a = np.ascontiguousarray(a)
            hdr = '%s %s %d %s\n' % (name, _DT[a.dtype], a.ndim, ' '.join(str(d) for d in a.shape))
            f.write(hdr.encode('ascii'))
            f.write(a.astype(a.dtype.newbyteorder('<'), copy=False).tobytes())
