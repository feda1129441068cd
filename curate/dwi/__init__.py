"""DWI derivation: a 4D diffusion series into FA, MD and mean-b0 (T2w) maps.

Pure functions, in pipeline order: :mod:`~curate.dwi.gradients` (table
checks, shells), :mod:`~curate.dwi.denoise` (MP-PCA, patch2self),
:mod:`~curate.dwi.gibbs` (ringing), :mod:`~curate.dwi.motion` (registration,
bvec rotation), :mod:`~curate.dwi.bias` (N4), :mod:`~curate.dwi.mask`
(brain mask), :mod:`~curate.dwi.tensor` (DTI maps); :mod:`~curate.dwi.chain`
runs them in order.  :mod:`~curate.dwi.phantom` simulates test series.
The ``dwi`` build stage (:mod:`curate.stages.dwi`) glues them to files.
"""
