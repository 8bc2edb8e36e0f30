// DataNames in HDF5 files (io's own): the string datasets feature_names and
// label_names, in a data file's root or a checkpoint's /model group.
#pragma once

#include <hdf5.h>

#include <string>

#include "nn_dist/io/names.hpp"

namespace nn_dist {

// feature_names and label_names under loc, each if present (else empty).
// where names loc in errors: "" for a file's root, "/model/".
DataNames read_names(hid_t loc, const std::string& what, const std::string& where);
// Each list that is not empty.
void write_names(hid_t loc, const DataNames& names);
// Throws Error "<what>: '<where>feature_names' holds 12 names for 13 features"
// when a list does not fit: feature names one per feature, label names one
// per class (classes 0: any number).
void require_names_fit(const DataNames& names, long features, long classes, const std::string& what,
                       const std::string& where);

}  // namespace nn_dist
