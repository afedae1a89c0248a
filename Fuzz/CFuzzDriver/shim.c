// The declaration in include/CFuzzDriver.h is all this module has; libFuzzer defines it.
#include "CFuzzDriver.h"
