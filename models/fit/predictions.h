// predictions.h: a fit's held-out predictions as a file a Python user loads with numpy
// (fit_dynamics writes it as DIR/predictions.npz).
//
// Every image is predicted once, by the split whose test set it is in, so the file holds
// a complete held-out prediction of the data and what it is scored against:
//   predictions   float32 (N, U, B)  held-out prediction, in the data's units (sp/s); NaN for
//                                    units of no area fitted (or excluded as unreliable)
//   observed      float32 (N, U, B)  trial means, NaN where an image has no trial
//   ceiling       float32 (U, B)     split-half reliability rho (Spearman-Brown); all NaN
//                                    when the data have one trial per image
//   test_split    int32 (N)          the split whose test set each image is in (0-based)
//   unit_id       str (U)            the data's unit ids
//   unit_area     str (U)            the area a unit was fitted in, "" for none
//   unit_role     str (U)            "fit" (readout trained with the network), "heldout"
//                                    (held out of the fit, read out afterwards), "" (neither)
//   bin_start_ms, bin_end_ms  float32 (B)
//   min_reliability  float32 (1)     units with rho <= this in a bin are not scored there
//   unit_r        float32 (S, U, B)  per split s, r over the images of split s (below); NaN
//                                    where the unit was not fitted or the data do not vary
//   unit_ev       float32 (S, U, B)  per split, max(r, 0)^2 / rho; NaN where not scored
//
// The score (results.json `ev`, per split s and bin b, for one area and role) is the median
// of unit_ev over its units, i.e. of max(r, 0)^2 / rho over the units with rho >
// min_reliability, r the Pearson correlation over the images of split s between
// predictions and observed (images without a trial left out; a constant prediction of
// varying data has r = 0). tests/test_dynamics.cpp recomputes both from the file.
#pragma once
#include "engine/io/npy.h"
#include "models/fit/dynamics.h"

namespace vt {

Npz fit_predictions_npz(const FitResult& R);

}  // namespace vt
