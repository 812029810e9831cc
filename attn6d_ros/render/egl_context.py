"""An EGL OpenGL context on a display of its own, made current for a `with` block and the caller's restored.

Why not glcontext's standalone context (moderngl's default): it creates its context on the EGL *device*
display, the very display pyrender (and other EGL users) take. EGL has one display per platform and
device in a process, and ``eglTerminate`` on it (pyrender's ``OffscreenRenderer.delete``) destroys every
context on it: our renders then read back garbage without any error (issue 30: refinements ran off by
0.6-2.7 m). So we create our context on Mesa's surfaceless platform display, which pyrender never uses, or,
on a device display, with ``EGL_TRACK_REFERENCES_KHR`` where the driver offers it (then another library's
``eglTerminate`` only drops its own reference). Our display is never terminated by us: another Renderer in
the process may hold a context on it.

Entering the context checks that it really is current afterwards and raises a RuntimeError if not: a
renderer that cannot draw must fail loudly, never return a stale framebuffer.
"""

from __future__ import annotations

import ctypes
import threading

_EGL_NO_DISPLAY = None
_EGL_NO_CONTEXT = None
_EGL_NO_SURFACE = None
_EGL_SUCCESS = 0x3000
_EGL_NONE = 0x3038
_EGL_TRUE = 1
_EGL_EXTENSIONS = 0x3055
_EGL_DRAW = 0x3059
_EGL_READ = 0x305A
_EGL_OPENGL_API = 0x30A2
_EGL_RENDERABLE_TYPE = 0x3040
_EGL_SURFACE_TYPE = 0x3033
_EGL_PBUFFER_BIT = 0x0004
_EGL_OPENGL_BIT = 0x0008
_EGL_CONTEXT_MAJOR_VERSION = 0x3098
_EGL_CONTEXT_MINOR_VERSION = 0x30FB
_EGL_CONTEXT_OPENGL_PROFILE_MASK = 0x30FD
_EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT = 0x00000001
_EGL_PLATFORM_DEVICE_EXT = 0x313F
_EGL_PLATFORM_SURFACELESS_MESA = 0x31DD
_EGL_TRACK_REFERENCES_KHR = 0x3352

_GL_RENDERER = 0x1F01
_SURFACELESS = "surfaceless display"
_SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast")

_lib_lock = threading.Lock()
_lib: _Egl | None = None


class _Egl:
    """The few libEGL entry points we call, typed for ctypes."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        vp, i32, u32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32

        def fn(name: str, restype: object, *argtypes: object) -> ctypes._CFuncPtr:
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        self.get_error = fn("eglGetError", i32)
        self.query_string = fn("eglQueryString", ctypes.c_char_p, vp, i32)
        self.get_platform_display = fn(
            "eglGetPlatformDisplay", vp, u32, vp, ctypes.POINTER(ctypes.c_ssize_t)
        )
        self.initialize = fn("eglInitialize", u32, vp, ctypes.POINTER(i32), ctypes.POINTER(i32))
        self.terminate = fn("eglTerminate", u32, vp)
        self.bind_api = fn("eglBindAPI", u32, u32)
        self.choose_config = fn(
            "eglChooseConfig", u32, vp, ctypes.POINTER(i32), ctypes.POINTER(vp), i32,
            ctypes.POINTER(i32),
        )  # fmt: skip
        self.create_context = fn("eglCreateContext", vp, vp, vp, vp, ctypes.POINTER(i32))
        self.destroy_context = fn("eglDestroyContext", u32, vp, vp)
        self.make_current = fn("eglMakeCurrent", u32, vp, vp, vp, vp)
        self.get_current_context = fn("eglGetCurrentContext", vp)
        self.get_current_display = fn("eglGetCurrentDisplay", vp)
        self.get_current_surface = fn("eglGetCurrentSurface", vp, i32)
        self.get_proc_address = get_proc = fn("eglGetProcAddress", vp, ctypes.c_char_p)
        address = get_proc(b"eglQueryDevicesEXT")
        self.query_devices = (
            ctypes.CFUNCTYPE(u32, i32, ctypes.POINTER(vp), ctypes.POINTER(i32))(address)
            if address
            else None
        )
        address = get_proc(b"eglQueryDeviceStringEXT")
        self.query_device_string = (
            ctypes.CFUNCTYPE(ctypes.c_char_p, vp, i32)(address) if address else None
        )
        client = self.query_string(_EGL_NO_DISPLAY, _EGL_EXTENSIONS) or b""
        self.client_extensions = set(client.decode().split())

    def error(self, call: str) -> RuntimeError:
        return RuntimeError(f"{call} failed with EGL error 0x{self.get_error():04x}")


def _egl(path: str) -> _Egl:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _Egl(path)
        return _lib


def _attribs(*pairs: int) -> ctypes.Array:
    return (ctypes.c_int32 * (len(pairs) + 1))(*pairs, _EGL_NONE)


class EglContext:
    """An OpenGL 3.3 core context, no surface (render into framebuffer objects), on a display of its own.

    Use ``with context:`` around every GL call; it makes this context current on the calling thread and,
    on exit, makes current again whatever was current before (another library's context), or nothing.
    It is also a moderngl loader: ``moderngl.init_context(loader=context)`` inside the ``with`` block.

    Args:
        device_index: EGL device to use (``eglQueryDevicesEXT`` order); None: Mesa's surfaceless platform
            where the EGL vendor offers it (it picks a GPU render node if there is one, llvmpipe
            otherwise; if it gives llvmpipe while a GPU has an EGL device, that device), else device 0.
        libegl: the EGL library to load.

    Raises:
        RuntimeError: no EGL, no such device, or no OpenGL 3.3 core context.
    """

    def __init__(self, device_index: int | None = None, *, libegl: str = "libEGL.so.1") -> None:
        self._egl = egl = _egl(libegl)
        # Display opened with EGL_TRACK_REFERENCES_KHR: then eglTerminate drops only our reference.
        self._tracked = False
        self._saved: list[tuple] = []
        self.display, self.display_kind = self._open_display(device_index)
        self.context = self._make_context()
        if device_index is None and self.display_kind == _SURFACELESS:
            hardware = self._hardware_devices()
            if hardware and self.renderer_name().lower().startswith(_SOFTWARE_RENDERERS):
                # Mesa's surfaceless platform fell back to the CPU although a GPU has an EGL device
                # (NVIDIA's driver, for one, may serve device displays only): take that device.
                egl.destroy_context(self.display, self.context)
                self.display, self.display_kind = self._open_display(hardware[0])
                self.context = self._make_context()

    def _make_context(self) -> int:
        """Initialises our display and creates an OpenGL 3.3 core context on it."""
        egl = self._egl
        major, minor = ctypes.c_int32(), ctypes.c_int32()
        if not egl.initialize(self.display, ctypes.byref(major), ctypes.byref(minor)):
            raise egl.error(f"eglInitialize ({self.display_kind})")
        if not egl.bind_api(_EGL_OPENGL_API):
            raise egl.error("eglBindAPI(EGL_OPENGL_API)")
        config = ctypes.c_void_p()  # EGL_NO_CONFIG_KHR: we draw into framebuffer objects only
        display_extensions = (egl.query_string(self.display, _EGL_EXTENSIONS) or b"").split()
        if b"EGL_KHR_no_config_context" not in display_extensions:
            # Mesa's surfaceless display offers no configs at all without a GPU, so only here.
            count = ctypes.c_int32()
            wanted = _attribs(
                _EGL_RENDERABLE_TYPE, _EGL_OPENGL_BIT, _EGL_SURFACE_TYPE, _EGL_PBUFFER_BIT
            )
            ok = egl.choose_config(
                self.display, wanted, ctypes.byref(config), 1, ctypes.byref(count)
            )
            if not ok or count.value < 1:
                raise egl.error(f"eglChooseConfig (OpenGL, pbuffer) on {self.display_kind}")
        version = _attribs(
            _EGL_CONTEXT_MAJOR_VERSION, 3, _EGL_CONTEXT_MINOR_VERSION, 3,
            _EGL_CONTEXT_OPENGL_PROFILE_MASK, _EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT,
        )  # fmt: skip
        context = egl.create_context(self.display, config, _EGL_NO_CONTEXT, version)
        if not context:
            raise egl.error(f"eglCreateContext (OpenGL 3.3 core) on {self.display_kind}")
        return context

    def _hardware_devices(self) -> list[int]:
        """Indices of the EGL devices that are not Mesa's software device."""
        egl = self._egl
        if egl.query_devices is None or egl.query_device_string is None:
            return []
        devices = (ctypes.c_void_p * 32)()
        count = ctypes.c_int32()
        if not egl.query_devices(32, devices, ctypes.byref(count)):
            return []
        return [
            i
            for i in range(count.value)
            if b"EGL_MESA_device_software"
            not in (egl.query_device_string(devices[i], _EGL_EXTENSIONS) or b"")
        ]

    def renderer_name(self) -> str:
        """GL_RENDERER of this context, e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)'."""
        with self:
            get_string = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_uint32)(
                self.load_opengl_function("glGetString")
            )
            return (get_string(_GL_RENDERER) or b"").decode(errors="replace")

    def _open_display(self, device_index: int | None) -> tuple[int, str]:
        """(EGLDisplay handle, description) of the display to use."""
        egl = self._egl
        if device_index is None and "EGL_MESA_platform_surfaceless" in egl.client_extensions:
            display = egl.get_platform_display(_EGL_PLATFORM_SURFACELESS_MESA, None, None)
            if display:
                return display, _SURFACELESS
        index = 0 if device_index is None else device_index
        if egl.query_devices is None:
            raise RuntimeError("EGL has no eglQueryDevicesEXT: cannot pick an EGL device")
        devices = (ctypes.c_void_p * 32)()
        count = ctypes.c_int32()
        if not egl.query_devices(32, devices, ctypes.byref(count)):
            raise egl.error("eglQueryDevicesEXT")
        if not 0 <= index < count.value:
            raise RuntimeError(f"egl_device must be in 0..{count.value - 1}, got {index}")
        attribs = None
        self._tracked = "EGL_KHR_display_reference" in egl.client_extensions
        if self._tracked:
            # A display of its own (attribute lists differ), reference-counted by eglTerminate.
            attribs = (ctypes.c_ssize_t * 3)(_EGL_TRACK_REFERENCES_KHR, _EGL_TRUE, _EGL_NONE)
        display = egl.get_platform_display(_EGL_PLATFORM_DEVICE_EXT, devices[index], attribs)
        if not display:
            raise egl.error(f"eglGetPlatformDisplay(EGL device {index})")
        return display, f"EGL device {index}"

    def __enter__(self) -> EglContext:
        egl = self._egl
        self._saved.append(
            (
                egl.get_current_display(),
                egl.get_current_surface(_EGL_DRAW),
                egl.get_current_surface(_EGL_READ),
                egl.get_current_context(),
            )
        )
        made = egl.make_current(self.display, _EGL_NO_SURFACE, _EGL_NO_SURFACE, self.context)
        if not made or egl.get_current_context() != self.context:
            error = egl.error(f"eglMakeCurrent of the renderer's context ({self.display_kind})")
            self._restore(self._saved.pop())
            raise error
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore(self._saved.pop())

    def _restore(self, saved: tuple) -> None:
        display, draw, read, context = saved
        egl = self._egl
        if context == self.context:
            return  # ours was current already (nested use)
        if not context or not egl.make_current(display, draw, read, context):
            # Nothing was current, or the caller's context is gone (its display terminated): leave nothing.
            egl.make_current(self.display, _EGL_NO_SURFACE, _EGL_NO_SURFACE, _EGL_NO_CONTEXT)

    def load_opengl_function(self, name: str) -> int:
        """Address of an OpenGL function (moderngl's loader interface; libglvnd dispatches it to the
        vendor of the current context, EGL_KHR_client_get_all_proc_addresses)."""
        return self._egl.get_proc_address(name.encode()) or 0

    def release(self) -> None:
        """moderngl's loader interface: called by Context.release; the context is destroyed by destroy()."""

    def destroy(self) -> None:
        """Destroys the context (not current afterwards); the display stays initialised for others."""
        if self.context:
            egl = self._egl
            if egl.get_current_context() == self.context:
                egl.make_current(self.display, _EGL_NO_SURFACE, _EGL_NO_SURFACE, _EGL_NO_CONTEXT)
            egl.destroy_context(self.display, self.context)
            self.context = None
            if self._tracked:
                egl.terminate(self.display)  # drops only our reference (EGL_KHR_display_reference)
