#ifndef ZAAS_CHIREDIS_SHIM_H
#define ZAAS_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
