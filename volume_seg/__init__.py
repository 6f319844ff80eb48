"""3D volume segmentation: left atrium (LA 2018, UA-MT h5 layout) and MSD-style NIfTI volumes."""
