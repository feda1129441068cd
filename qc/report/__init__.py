"""The HTML dataset card and QC gallery of a curated collection.

Pure rendering: a manifest table in, an HTML string out.  Reading the
manifest, drawing missing thumbnails and writing the page are done by
:mod:`curate.report`.

* :mod:`qc.report.aggregate` - the numbers (pyarrow/pandas, shared with ``curate status``);
* :mod:`qc.report.figures` - matplotlib figures as SVG data URIs;
* :mod:`qc.report.gallery` - which images the gallery shows, and its HTML;
* :mod:`qc.report.sections`, :mod:`qc.report.page`, :mod:`qc.report.assets` - the page.

Nothing is imported here, so the terminal summary does not pay for matplotlib.
"""
