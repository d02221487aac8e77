// OpenBLAS's CBLAS interface (Debian: libopenblas-dev).
#include <cblas.h>

// Declared by OpenBLAS's own header under this name; repeated here so the module has it even
// when the cblas.h alternative points at another BLAS.
void openblas_set_num_threads(int num_threads);
