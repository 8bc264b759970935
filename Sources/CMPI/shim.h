// Open MPI's C interface (Debian: libopenmpi-dev, found through `pkg-config ompi-c`). Open MPI spells
// its predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, MPI_IN_PLACE, MPI_ERRORS_RETURN, ...) as
// macros over global symbols, which Swift cannot import: the functions below return them.
#ifndef BISSL_CMPI_SHIM_H
#define BISSL_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm bissl_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype bissl_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype bissl_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype bissl_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype bissl_mpi_long_long(void) { return MPI_LONG_LONG; }
static inline MPI_Op bissl_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Op bissl_mpi_max(void) { return MPI_MAX; }
static inline void *bissl_mpi_in_place(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler bissl_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline int bissl_mpi_success(void) { return MPI_SUCCESS; }
static inline int bissl_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int bissl_mpi_thread_funneled(void) { return MPI_THREAD_FUNNELED; }
#endif
