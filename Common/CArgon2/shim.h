#ifndef ZAAS_CARGON2_SHIM_H
#define ZAAS_CARGON2_SHIM_H
#include <argon2.h>
#endif
