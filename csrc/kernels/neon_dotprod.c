/*
 * kernels/neon_dotprod.c — the "neon-dotprod" table: kernels/neon.c compiled
 * again with SDOT for its integer products (the Makefile's ISA_neon_dotprod:
 * -march=armv8.2-a+dotprod). Nothing here may run before kernels/dispatch.c has
 * seen HWCAP asimddp; the only entry point is plm_kernels_neon_dotprod_table().
 */
#define PLM_NEON_DOTPROD 1
#include "neon.c"
