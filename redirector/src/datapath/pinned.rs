//! Opening the maps pinned under the pin path: the one place that knows
//! where a map's pin file is and turns it into a map handle, shared by the
//! loader, the typed facade ([`super::Maps`]) and the sweep
//! ([`super::FlowTable`]).

use std::path::{Path, PathBuf};

use aya::maps::{Map, MapData, MapError};
use redirector_common::MapSpec;

use super::DatapathError;

/// Where the map `spec` is pinned under `pin_path`.
pub(super) fn pin_file(pin_path: &Path, spec: &MapSpec) -> PathBuf {
    pin_path.join("maps").join(spec.name)
}

/// Opens the map `spec` pinned under `pin_path`. Callers read its
/// capacity from the result (`info()`) or make it typed with [`typed`].
pub(super) fn open_pinned(pin_path: &Path, spec: &MapSpec) -> Result<MapData, DatapathError> {
    let path = pin_file(pin_path, spec);
    if !path.exists() {
        return Err(DatapathError::NotLoaded {
            path: pin_path.into(),
        });
    }
    MapData::from_pin(&path).map_err(map_err(spec.name))
}

/// `data` as the typed map `T` (aya checks its kind, key and value sizes).
pub(super) fn typed<T>(data: MapData, spec: &MapSpec) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    Map::from_map_data(data)
        .and_then(T::try_from)
        .map_err(map_err(spec.name))
}

/// [`open_pinned`] then [`typed`].
pub(super) fn open_typed<T>(pin_path: &Path, spec: &MapSpec) -> Result<T, DatapathError>
where
    T: TryFrom<Map, Error = MapError>,
{
    typed(open_pinned(pin_path, spec)?, spec)
}

/// Builds the error of a failed operation on the map named `map`.
pub(super) fn map_err(map: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map {
        map,
        source: Box::new(source),
    }
}
