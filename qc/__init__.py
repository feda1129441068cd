"""Quality control: pure measures (arrays in, numbers out), IQS rules, reports.

* :mod:`qc.regions` splits a volume into head, air and tissue classes;
* :mod:`qc.measures` holds the no-reference measures (noise, SNR, CNR, CJV,
  EFC, FBER, FWHM) as array-in, number-out functions;
* :mod:`qc.artifacts` holds the artifact measures (ghosting, ringing,
  truncation, bad slices);
* :mod:`qc.profile` computes every measure of one image at once;
* :mod:`qc.iqs` turns measures into OpenMind's 1-5 components and score;
* :mod:`qc.degrade` makes the controlled degradations the calibration is fitted on;
* :mod:`qc.thumbnails` and :mod:`qc.report` draw the QC gallery and dataset card.
"""
