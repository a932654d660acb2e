"""Shape statistics of 3D objects (anisotropic voxels) and their 2D equivalents.

3D: volume, surface area (marching cubes with the voxel spacing), SA:V, sphericity
``π^(1/3) (6V)^(2/3) / A``, compactness ``36πV² / A³``, solidity, elongation ``a/b`` and
flatness ``b/c`` from the inertia ellipsoid (semi-axes ``a ≥ b ≥ c``), maximum Feret diameter.
2D: area, perimeter (marching squares), perimeter / area, circularity ``4πA / P²``, solidity,
elongation, maximum Feret diameter.

Every value is bounded at every size: sphericity, compactness and circularity use the volume
(area) enclosed by the same boundary whose area (length) they divide by, so the isoperimetric
inequality keeps them in (0, 1]; solidity compares the voxels with the convex hull of their
corners (≤ 1); the inertia ellipsoid counts each voxel as a box, so elongation and flatness are
finite and ≥ 1 even for one voxel. Objects below :data:`MIN_SHAPE_PIXELS` have no resolved
surface: their surface-based values are NaN and ``shape_note`` says so.

The marching-cubes surface (marching-squares contour) of a voxel mask follows the voxel
staircase and overestimates the area by 5-15 %; Taubin (1995) smoothing, followed by a
rescale that restores the enclosed volume, brings spheres within about 1 %.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi
from scipy import sparse
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist
from skimage.measure import find_contours, marching_cubes, mesh_surface_area

from .objects import Region


def max_pairwise_distance(points: np.ndarray) -> float:
    """Largest distance between any two points (their convex hull is searched when large)."""
    pts = np.unique(np.asarray(points, dtype=float), axis=0)
    if len(pts) < 2:
        return 0.0
    if len(pts) > 64:
        pts = pts[ConvexHull(pts, qhull_options="QJ").vertices]
    return float(pdist(pts).max())


SMOOTHING_ROUNDS = 30


def taubin_smooth(points: np.ndarray, edges: np.ndarray, rounds: int = SMOOTHING_ROUNDS,
                  lam: float = 0.5, mu: float = -0.53) -> np.ndarray:
    """Taubin (λ|μ) smoothing of mesh/contour vertices connected by ``edges`` (pairs of indices)."""
    n = len(points)
    i = np.concatenate([edges[:, 0], edges[:, 1]])
    j = np.concatenate([edges[:, 1], edges[:, 0]])
    adjacency = sparse.csr_matrix((np.ones(len(i)), (i, j)), shape=(n, n))
    adjacency.data[:] = 1.0  # shared edges are listed twice
    degree = np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1.0)
    mean_of_neighbours = sparse.diags(1.0 / degree) @ adjacency
    for _ in range(rounds):
        points = points + lam * (mean_of_neighbours @ points - points)
        points = points + mu * (mean_of_neighbours @ points - points)
    return points


#: objects with fewer voxels (3D) / pixels (2D) have no resolved shape: their surface-based
#: ratios are NaN and ``shape_note`` says why
MIN_SHAPE_PIXELS = {3: 27, 2: 9}


def enclosed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume inside a closed triangle mesh (divergence theorem; orientation-independent)."""
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    return float(abs(np.einsum("ij,ij->", a, np.cross(b, c))) / 6.0)


def polygon_area(points: np.ndarray) -> float:
    """Signed shoelace area of a closed polygon given without its repeated first point."""
    y, x = points[:, 0], points[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _rescale(points: np.ndarray, factor: float) -> np.ndarray:
    centre = points.mean(axis=0)
    return centre + (points - centre) * factor


@dataclass
class ShapeObject:
    """One object with cached geometry (boundary mesh/contours, inertia eigenvalues).

    The boundary is the marching-cubes surface (marching-squares contours) at the half-voxel
    level, Taubin-smoothed and then scaled about its centre so that it encloses the same
    volume (area) as before smoothing: coarse meshes of small objects would otherwise shrink.
    """

    region: Region

    @cached_property
    def coords(self) -> np.ndarray:
        """Pixel (voxel) centres in µm from the image origin, shape ``(n, ndim)``."""
        return self.region.coords_um()

    @cached_property
    def pixels(self) -> int:
        """Number of pixels (voxels) in the object."""
        return int(np.count_nonzero(self.region.mask))

    @cached_property
    def size(self) -> float:
        """Volume (3D) or area (2D): pixel count × pixel size."""
        return float(self.pixels * np.prod(self.region.spacing))

    @cached_property
    def note(self) -> str:
        """Why the surface-based shape ratios are NaN ("" when they are defined)."""
        need = MIN_SHAPE_PIXELS[self.region.mask.ndim]
        if self.pixels < need:
            return f"fewer than {need} {'voxels' if self.region.mask.ndim == 3 else 'pixels'}"
        return ""

    @cached_property
    def boundary_points(self) -> np.ndarray:
        """Points on the boundary surface/contour, image coordinates."""
        offset = np.asarray(self.region.offset) * np.asarray(self.region.spacing)
        if self.region.mask.ndim == 3:
            return self._mesh[0] + offset
        return np.concatenate(self._contours) + offset

    @cached_property
    def boundary(self) -> float:
        """Surface area (3D) or perimeter (2D) of the smoothed boundary."""
        if self.region.mask.ndim == 3:
            verts, faces = self._mesh
            return float(mesh_surface_area(verts, faces))
        return float(sum(np.sum(np.linalg.norm(np.diff(np.concatenate([c, c[:1]]), axis=0),
                                               axis=1)) for c in self._contours))

    @cached_property
    def enclosed(self) -> float:
        """Volume (area) inside the smoothed boundary."""
        if self.region.mask.ndim == 3:
            return enclosed_volume(*self._mesh)
        return abs(sum(polygon_area(c) for c in self._contours))

    @cached_property
    def _raw_mesh(self) -> tuple[np.ndarray, np.ndarray]:
        verts, faces, _, _ = marching_cubes(
            self.region.mask.astype(np.float32), 0.5, spacing=self.region.spacing
        )
        return verts, faces

    @cached_property
    def _mesh(self) -> tuple[np.ndarray, np.ndarray]:
        verts, faces = self._raw_mesh
        edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        smooth = taubin_smooth(verts, edges)
        before, after = enclosed_volume(verts, faces), enclosed_volume(smooth, faces)
        return (_rescale(smooth, (before / after) ** (1 / 3)) if after > 0 else verts), faces

    @cached_property
    def _contours(self) -> list[np.ndarray]:
        """Closed smoothed contours, crop coordinates, first point not repeated.

        The crop has a background border, so every marching-squares contour is closed.
        """
        out = []
        for c in find_contours(self.region.mask.astype(np.float32), 0.5):
            pts = (c[:-1] if np.array_equal(c[0], c[-1]) else c) * np.asarray(self.region.spacing)
            idx = np.arange(len(pts))
            smooth = taubin_smooth(pts, np.stack([idx, np.roll(idx, -1)], axis=1))
            before, after = abs(polygon_area(pts)), abs(polygon_area(smooth))
            out.append(_rescale(smooth, np.sqrt(before / after)) if after > 0 else pts)
        return out

    def isoperimetric(self) -> float:
        """Sphericity (3D) or circularity (2D) of the smoothed boundary, in (0, 1].

        Computed from the boundary and the volume it encloses, so the isoperimetric inequality
        bounds it by 1; where smoothing made the boundary cross itself and the bound fails,
        the unsmoothed marching-cubes (marching-squares) boundary is used instead.
        """
        if self.note:
            return float("nan")
        value = _iso(self.enclosed, self.boundary, self.region.mask.ndim)
        if value <= 1.0:
            return value
        if self.region.mask.ndim == 3:
            verts, faces = self._raw_mesh
            return min(_iso(enclosed_volume(verts, faces), mesh_surface_area(verts, faces), 3), 1.0)
        contours = [c * np.asarray(self.region.spacing)
                    for c in find_contours(self.region.mask.astype(np.float32), 0.5)]
        area = abs(sum(polygon_area(c[:-1]) for c in contours))
        length = sum(np.sum(np.linalg.norm(np.diff(c, axis=0), axis=1)) for c in contours)
        return min(_iso(area, length, 2), 1.0)

    @cached_property
    def semi_axes(self) -> np.ndarray:
        """Semi-axes of the solid ellipsoid (ellipse) with the same second moments, descending.

        Each voxel counts as a uniform box, so even one voxel has positive semi-axes.
        """
        centred = self.coords - self.coords.mean(axis=0)
        cov = centred.T @ centred / len(centred)
        cov += np.diag(np.asarray(self.region.spacing) ** 2 / 12.0)  # each voxel's own extent
        values = np.sort(np.linalg.eigvalsh(cov))[::-1]
        factor = 5.0 if self.region.mask.ndim == 3 else 4.0
        return np.sqrt(factor * np.clip(values, values[0] * 1e-12, None))

    @cached_property
    def hull_size(self) -> float:
        """Volume (area) of the convex hull of the corners of the object's boundary voxels."""
        mask = self.region.mask
        edge = mask & ~ndi.binary_erosion(mask)
        idx = np.argwhere(edge).astype(float)
        corners = np.array(list(itertools.product((-0.5, 0.5), repeat=mask.ndim)))
        pts = np.unique((idx[:, None, :] + corners[None]).reshape(-1, mask.ndim), axis=0)
        return float(ConvexHull(pts * np.asarray(self.region.spacing)).volume)


def _iso(enclosed: float, boundary: float, ndim: int) -> float:
    """π^(1/3) (6V)^(2/3) / A in 3D, 4πA / P² in 2D."""
    if not boundary > 0:
        return float("nan")
    if ndim == 3:
        return float(np.pi ** (1 / 3) * (6 * enclosed) ** (2 / 3) / boundary)
    return float(4 * np.pi * enclosed / boundary**2)


def volume(obj: ShapeObject) -> float:
    """Voxel count × voxel volume (µm³)."""
    return obj.size


def area(obj: ShapeObject) -> float:
    """Pixel count × pixel area (µm²)."""
    return obj.size


def surface_area(obj: ShapeObject) -> float:
    """Area of the smoothed marching-cubes surface at the half-voxel level (µm²)."""
    return float("nan") if obj.note else obj.boundary


def perimeter(obj: ShapeObject) -> float:
    """Length of the smoothed marching-squares contours at the half-pixel level (µm)."""
    return float("nan") if obj.note else obj.boundary


def boundary_ratio(obj: ShapeObject) -> float:
    """Surface area / volume (3D) or perimeter / area (2D) (1/µm)."""
    return float("nan") if obj.note else obj.boundary / obj.size


def sphericity(obj: ShapeObject) -> float:
    """Surface of the sphere enclosing the same volume over the surface area (0-1; 1 = sphere)."""
    return obj.isoperimetric()


def compactness(obj: ShapeObject) -> float:
    """36πV² / A³ = sphericity³ (0-1; 1 = sphere)."""
    return obj.isoperimetric() ** 3


def circularity(obj: ShapeObject) -> float:
    """4πA / P² (0-1; 1 = disc)."""
    return obj.isoperimetric()


def solidity(obj: ShapeObject) -> float:
    """Volume (area) over the volume (area) of the convex hull of the voxels (0-1; 1 = convex)."""
    return float(min(obj.size / obj.hull_size, 1.0))


def shape_note(obj: ShapeObject) -> str:
    """Why the surface-based values are empty (NaN), if they are."""
    return obj.note


def touches_border(obj: ShapeObject) -> float:
    """1 when the object touches the image border (its shape is cut), else 0."""
    return float(obj.region.touches_border)


def elongation(obj: ShapeObject) -> float:
    """Longest over middle (3D) or longest over shortest (2D) inertia semi-axis (≥ 1)."""
    a = obj.semi_axes
    return float(a[0] / a[1])


def flatness(obj: ShapeObject) -> float:
    """Middle over shortest inertia semi-axis (≥ 1; 3D only)."""
    a = obj.semi_axes
    return float(a[1] / a[2])


def feret_max(obj: ShapeObject) -> float:
    """Largest distance between two boundary points (µm)."""
    return max_pairwise_distance(obj.boundary_points)


def centroid(obj: ShapeObject, axis: int) -> float:
    """Centroid along one array axis (µm from the image origin)."""
    return float(obj.coords[:, axis].mean())


def bbox_start(obj: ShapeObject, axis: int) -> float:
    """Lower edge of the bounding box along one axis (µm)."""
    return float((obj.region.offset[axis] + 1) * obj.region.spacing[axis])


def bbox_stop(obj: ShapeObject, axis: int) -> float:
    """Upper edge of the bounding box along one axis (µm)."""
    return float((obj.region.offset[axis] + obj.region.mask.shape[axis] - 1)
                 * obj.region.spacing[axis])


@dataclass
class ShapeImage:
    """The sizes of all objects of one image (µm³ or µm²) with the image's shape and spacing.

    The per-image measures need nothing else, so a blockwise measurement can build this from
    the sizes alone, without keeping the objects.
    """

    sizes: list[float]
    shape: tuple[int, ...]
    spacing: tuple[float, ...]

    @property
    def image_size(self) -> float:
        """Volume (3D) or area (2D) of the whole image."""
        return float(np.prod(self.shape) * np.prod(self.spacing))


def count(ctx: ShapeImage) -> float:
    """Number of objects."""  # noqa: D401 (a column description, see registry.py)
    return float(len(ctx.sizes))


def total_size(ctx: ShapeImage) -> float:
    """Summed object volume (3D, µm³) or area (2D, µm²)."""  # noqa: D401 (column description)
    return float(sum(ctx.sizes))


def size_fraction(ctx: ShapeImage) -> float:
    """Fraction of the image volume (area) inside objects."""
    return total_size(ctx) / ctx.image_size


def number_density(ctx: ShapeImage) -> float:
    """Objects per µm³ (3D) or per µm² (2D) of image."""
    return len(ctx.sizes) / ctx.image_size
